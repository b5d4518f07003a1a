"""Write bytecode only for the modules xmr actually loads (run in the image's builder stage).

pip's usual compile-everything step writes ~300 MB of .pyc into the venv, most of it for code
no xmr command ever imports (transformers' hundreds of model families, most of sympy, ...).
The image is installed with `pip install --no-compile`; this script then imports every module
of the project, runs both backbones and the char n-gram featuriser once on dummy inputs (which
pulls in what they import lazily), and compiles exactly the modules that ended up loaded. A
module it missed still works: Python compiles it in memory when it is first imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import py_compile
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

PROJECT = ("xmr", "models", "index", "service")
# Imported by uvicorn or the trainer only while running, never at import time.
RUNTIME_EXTRAS = (
    "uvicorn.loops.auto", "uvicorn.loops.asyncio", "uvicorn.protocols.http.auto",
    "uvicorn.protocols.http.h11_impl", "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on", "uvicorn.logging", "multipart", "python_multipart",
    "matplotlib.pyplot", "matplotlib.backends.backend_agg", "yaml", "sqlite3", "PIL.PngImagePlugin",
    "PIL.JpegImagePlugin", "PIL.WebPImagePlugin", "cairosvg", "faiss",
)


def import_project() -> None:
    for name in PROJECT:
        try:
            package = importlib.import_module(name)
        except ImportError:
            continue  # not in this version of the tree
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            if info.name.endswith(".__main__"):
                continue  # would run the command line
            try:
                importlib.import_module(info.name)
            except Exception as err:  # a module with optional deps (e.g. the scale extra)
                print(f"precompile: skip {info.name}: {type(err).__name__}: {err}")
    for name in RUNTIME_EXTRAS:
        try:
            importlib.import_module(name)
        except ImportError as err:
            print(f"precompile: skip {name}: {err}")


def exercise_backbones() -> None:
    import numpy as np

    from models.backbones.image import IMAGE_BACKBONES, EfficientNetLite
    from models.backbones.text import CharNgram, MiniLM

    for name in IMAGE_BACKBONES:
        image = EfficientNetLite(name)
        image.encode(np.zeros((1, 3, image.size, image.size), np.float32))
    MiniLM().encode(["a cat face", "grinning face with big eyes"])
    texts = ["cat face", "dog face", "grinning face", "red heart", "rocket", "pizza"]
    CharNgram.fit(texts, dim=2).encode(texts)


def compile_loaded() -> tuple[int, int]:
    compiled = failed = 0
    for module in list(sys.modules.values()):
        source = getattr(module, "__file__", None)
        if not source or not source.endswith(".py") or not os.path.exists(source):
            continue
        try:
            py_compile.compile(source, cfile=importlib.util.cache_from_source(source),
                               doraise=True)
            compiled += 1
        except (py_compile.PyCompileError, OSError):
            failed += 1
    return compiled, failed


if __name__ == "__main__":
    import_project()
    exercise_backbones()
    done, bad = compile_loaded()
    print(f"precompile: {done} modules compiled, {bad} failed")
