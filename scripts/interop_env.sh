#!/usr/bin/env bash
# Idempotent side venv `.venv-interop` holding the real competitors: SAELens (`sae-lens`, for the interop tests and
# the bench) and EleutherAI sparsify (`eai-sparsify`, for the bench). They are not miStudio dependencies (SAELens
# pulls transformer-lens, wandb, statsmodels, ~45 packages), so they never enter .venv.
#
# The side venv is layered over .venv: a .pth file puts .venv's site-packages on its path, and every install is
# constrained to .venv's exact versions (torch==2.13.0 included), so pip adds only what the two packages need on
# top and can never pull another torch (a CUDA build is several GB). Checked: their pins agree with ours.
# A stamp holds the hash of the two pins and of .venv's requirements, so a re-run is a no-op (< 1 s).
set -euo pipefail
cd "$(dirname "$0")/.."
SAELENS="sae-lens==6.54.12"
SPARSIFY="eai-sparsify==1.3.3"
[ -x .venv/bin/python ] || bash scripts/install.sh
V=.venv-interop
hash="$( (echo "$SAELENS $SPARSIFY layered-v1"; cat requirements.txt .venv/.stamp-base 2>/dev/null) | sha256sum | cut -c1-16)"
[ "$(cat $V/.stamp 2>/dev/null)" = "$hash" ] && [ -x $V/bin/python ] && exit 0
start=$(date +%s)
rm -rf $V
.venv/bin/python -m venv $V
base_site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
side_site="$($V/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$base_site" > "$side_site/_mistudio_base.pth"
# Constraints: everything .venv has, at the version it has (torch first among them).
.venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e ' > $V/constraints.txt
echo "torch==2.13.0" >> $V/constraints.txt
# quiet on success (this machine's pip config warns per package), the whole log on failure
if ! $V/bin/python -m pip install -q -c $V/constraints.txt "$SAELENS" "$SPARSIFY" > $V/pip.log 2>&1; then
  cat $V/pip.log >&2; exit 1
fi
$V/bin/python - <<'EOF' > /dev/null 2>&1 || { echo "sae-lens / sparsify do not import in $V (see $V/pip.log)" >&2; exit 1; }
import sae_lens, sparsify, torch  # noqa: F401  (fails the set-up now rather than the tests later)
assert torch.__version__.startswith("2.13.0"), torch.__version__
EOF
echo "$hash" > $V/.stamp
echo "interop venv ready in $(( $(date +%s) - start )) s: $V ($SAELENS, $SPARSIFY)" >&2
