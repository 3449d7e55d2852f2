"""Batch evaluation of datasets: tasks as YAML files, manifests, one resumable runner (local or Ray),
scikit-learn metrics, report.html and paired-bootstrap comparison of runs (`polyglm eval`)."""
