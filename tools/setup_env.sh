#!/usr/bin/env bash
# One-command set-up: creates .venv/ in the repository root and installs, in order,
# torch, build tools, mmengine, mmcv (built from source with ops), mmdet, the other
# requirements and this project (editable).
#
#   bash tools/setup_env.sh
#
# Environment knobs:
#   PYTHON=python3.11        interpreter used to create .venv (default: python3)
#   TORCH_SPEC="torch==2.13.0"  what to install when .venv has no torch yet. A torch that is
#                            already in .venv (e.g. your CUDA build) is always kept.
#   PIP_FIND_LINKS=DIR       honoured by pip: a folder of prebuilt wheels (e.g. ../shared/wheels)
#   WITH_OPTIONAL=0          skip onnx/onnxruntime/tensorboard
# Re-running on a ready .venv only checks the stamp and imports (seconds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
WITH_OPTIONAL="${WITH_OPTIONAL:-1}"
STAMP="$VENV/.retinaface-setup-stamp"

step() { printf '\n==> %s\n' "$*"; }
die() { printf '\nERROR: %s\n' "$*" >&2; exit 1; }

stamp_value() {
  cat tools/setup_env.sh requirements/*.txt setup.py pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1
  echo "optional=$WITH_OPTIONAL"
}

check_imports() {
  "$PY" - <<'EOF' 2>/dev/null
import torch, mmengine, mmcv, mmdet, pkg_resources  # noqa: F401
from mmcv.ops import nms  # noqa: F401  (compiled ops present)
import projects.retinaface  # noqa: F401
assert mmcv.__version__ == '2.1.0', mmcv.__version__
assert mmengine.__version__ == '0.10.7', mmengine.__version__
assert mmdet.__version__ == '3.3.0', mmdet.__version__
EOF
}

# ---------------------------------------------------------------- fast path
if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_value)" ] && check_imports; then
  echo "Environment in $VENV is ready (stamp matches, imports OK). Nothing to do."
  exit 0
fi

# ---------------------------------------------------------------- venv
command -v "$PYTHON" >/dev/null || die "'$PYTHON' not found. Install Python 3.8-3.11 or set PYTHON=/path/to/python."
if [ ! -x "$PY" ]; then
  step "Creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV" || die "could not create a venv with '$PYTHON' (on Debian/Ubuntu: apt-get install python3-venv)."
fi
PIP=("$PY" -m pip --disable-pip-version-check)
# PIP_FIND_LINKS in the environment *replaces* any find-links from pip's config files
# (e.g. a local folder holding the torch wheel). Keep both.
if [ -n "${PIP_FIND_LINKS:-}" ]; then
  cfg_links="$(env -u PIP_FIND_LINKS "$PY" -m pip config get global.find-links 2>/dev/null || true)"
  for link in $cfg_links; do
    case " $PIP_FIND_LINKS " in *" $link "*) ;; *) PIP_FIND_LINKS="$PIP_FIND_LINKS $link" ;; esac
  done
  export PIP_FIND_LINKS
  echo "pip find-links: $PIP_FIND_LINKS"
fi

# ---------------------------------------------------------------- torch
if "$PY" -c 'import torch' 2>/dev/null; then
  step "Keeping the torch already installed: $("$PY" -c 'import torch; print(torch.__version__)')"
else
  step "Installing $TORCH_SPEC (GPU users: install your CUDA build of torch into .venv first; it is kept)"
  "${PIP[@]}" install "$TORCH_SPEC" || die "could not install '$TORCH_SPEC'. Install torch yourself into .venv (see README) and re-run."
fi
"$PY" -c 'import torch' || die "torch is installed but does not import; reinstall a torch build that matches this Python."

# ---------------------------------------------------------------- build tools
step "Installing build tools (setuptools>=77,<81 keeps pkg_resources, needed by mmcv's build and mmengine)"
"${PIP[@]}" install -r requirements/build.txt

# ---------------------------------------------------------------- mmengine
step "Installing mmengine 0.10.7"
"${PIP[@]}" install "mmengine==0.10.7"

# ---------------------------------------------------------------- mmcv
if "$PY" -c 'import mmcv; from mmcv.ops import nms; assert mmcv.__version__ == "2.1.0"' 2>/dev/null; then
  step "mmcv 2.1.0 with ops already installed"
else
  command -v "${CXX:-g++}" >/dev/null || die "no C++ compiler found: mmcv 2.1.0 is built from source (apt-get install build-essential), or set PIP_FIND_LINKS to a folder holding a prebuilt mmcv-2.1.0 wheel."
  export MMCV_WITH_OPS=1
  if "$PY" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else 1)' && command -v nvcc >/dev/null; then
    export FORCE_CUDA=1
    step "Building mmcv 2.1.0 with CUDA ops (torch $("$PY" -c 'import torch; print(torch.version.cuda)'))"
  else
    step "Installing mmcv 2.1.0 with CPU ops (from PIP_FIND_LINKS='${PIP_FIND_LINKS:-}' if it holds a wheel, else built from source: ~30 min on 2 cores)"
  fi
  "${PIP[@]}" install --no-build-isolation "mmcv==2.1.0" \
    || die "mmcv 2.1.0 failed to build. Check that torch imports, a C++ compiler and ninja are present, and setuptools<81 is installed; see the log above."
  "$PY" -c 'from mmcv.ops import nms' || die "mmcv installed but its compiled ops do not load (built against another torch?). Remove it (pip uninstall mmcv) and re-run."
fi

# ---------------------------------------------------------------- mmdet & the rest
step "Installing mmdet 3.3.0 and the other requirements"
"${PIP[@]}" install -r requirements/runtime.txt -r requirements/tests.txt
if [ "$WITH_OPTIONAL" = "1" ]; then
  step "Installing optional requirements (onnx, onnxruntime, tensorboard)"
  "${PIP[@]}" install -r requirements/optional.txt || echo "WARNING: optional requirements failed; ONNX tools and their tests will be skipped."
fi

# ---------------------------------------------------------------- this project
step "Installing this project (editable)"
"${PIP[@]}" install --no-build-isolation --no-deps -e .

check_imports || die "the environment was installed but the imports check failed; run: $PY -c 'import mmdet, mmcv.ops, projects.retinaface'"
stamp_value > "$STAMP"
step "Done. Run the tests with: .venv/bin/python -m pytest"
