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

    results = verify_platform(platform, on_result=show)
    failed = [r.role for r in results if not r.passed]
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
        print(f"  {name}: majority baseline {report['majority_baseline']:.3f}, macro-F1 {report['macro_f1']}")
    for failure in summary["failed"]:
        print(f"  failed {failure['id']}: {failure['error']}")
    print(f"results, summary.json and plots in {options.folder}")
    return 0


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
    print(finetune_cli_summary(finetune_scenario(options)))
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    # No file watcher: watching the repo (and .venv) overflows inotify and reruns scripts mid-reply.
    command = [
        sys.executable, "-m", "streamlit", "run", str(STREAMLIT_APP),
        "--server.port", str(args.port), "--server.address", args.address, "--server.headless", "true",
        "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
        "--", "--profile", args.profile,
    ]  # fmt: skip
    # exec, not a child process: a signal to `polyglm app` (Ctrl-C, a test's terminate) must reach streamlit.
    os.execv(sys.executable, command)


def cmd_serve(args: argparse.Namespace) -> int:
    from polyglm.serve import ServeOptions, serve

    media_root = Path(args.media_root) if args.media_root else None
    serve(ServeOptions(profile=args.profile, api_key=args.api_key, media_root=media_root), args.host, args.port)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polyglm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="prepare, verify and list model profiles")
    models_cmds = models.add_subparsers(dest="models_command", required=True)
    prepare = models_cmds.add_parser("prepare", help="build a profile's parts into the cache (once)")
    _profile_arg(prepare)
    prepare.set_defaults(handler=cmd_models_prepare)
    verify = models_cmds.add_parser("verify", help="prove every part of a profile with a real output")
    _profile_arg(verify)
    verify.set_defaults(handler=cmd_models_verify)
    listing = models_cmds.add_parser("list", help="profiles, parts present, sizes, licences, adapters")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_models_list)

    scenarios = commands.add_parser("scenarios", help="scenario packs")
    scenario_cmds = scenarios.add_subparsers(dest="scenarios_command", required=True)
    scenario_list = scenario_cmds.add_parser("list", help="packs with languages, tools, kb, data and eval sizes")
    scenario_list.add_argument("--json", action="store_true")
    scenario_list.set_defaults(handler=cmd_scenarios_list)
    scenario_eval = scenario_cmds.add_parser("eval", help="score a pack's eval set end to end (resumable)")
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

    chat = commands.add_parser("chat", help="chat with the profile's language model")
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
        "or the LM's label scores (for strong LMs such as the GLM profiles)",
    )
    chat.add_argument("--max-new-tokens", type=int, default=256)
    chat.add_argument("--temperature", type=float, default=0.0)
    chat.set_defaults(handler=cmd_chat)

    train = commands.add_parser("train-adapter", help="stage-1 alignment of an encoder with the frozen LM")
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

    finetune = commands.add_parser("finetune", help="LoRA fine-tune on a scenario pack, with a forgetting guard")
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
    finetune.set_defaults(handler=cmd_finetune)

    app = commands.add_parser("app", help="start the Streamlit app")
    _profile_arg(app)
    app.add_argument("--port", type=int, default=8501)
    app.add_argument("--address", default="0.0.0.0", help="interface to listen on (127.0.0.1 for local only)")
    app.set_defaults(handler=cmd_app)

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
