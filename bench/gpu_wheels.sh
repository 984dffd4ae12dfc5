#!/usr/bin/env bash
# Bring what a bare GPU machine lacks into .whl/ (git-ignored), for bench/gpu_kit.py --wheels .whl.
#
# The machine lent here has Python 3.12, torch 2.11+cu130, transformers 5.17, peft, accelerate,
# pyarrow and nvidia-ml-py, and no network. This downloads cp312 manylinux wheels of exactly
# what ftwizard's train/eval/export paths import and the machine lacks, at the versions tested
# here (transformers 5.24 and peft 0.21 too, so the GPU runs the code the CPU suite ran);
# strips bitsandbytes down to its CUDA 13.0 library (the full wheel is 43 MB of libraries for
# every CUDA and ROCm version); puts liger-kernel in .whl/liger (installed apart, used only
# by the kit's Liger runs); copies the embedded model's tokenizer files into .whl/tokenizer;
# and prints the size of what travels (repository + .whl), which must stay under 64 MiB.
#
#   bash bench/gpu_wheels.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."
W=.whl
mkdir -p "$W" "$W/liger" "$W/tokenizer"
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
DL=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}")

# Missing on the machine (trl, datasets and its dill/multiprocess, bitsandbytes, pydantic and
# its three, orjson, and ftwizard's small ones on these paths), plus newer transformers/peft.
PKGS=(
  trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 bitsandbytes==0.50.2
  pydantic==2.13.4 pydantic_core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2
  typing_extensions==4.16.0 orjson==3.13.0 transformers==5.24.0 peft==0.21.2
  rensa==0.5.0 python-stdnum==2.2 phonenumbers==9.0.43
)
"${DL[@]}" -d "$W" "${PKGS[@]}"
"${DL[@]}" -d "$W/liger" liger-kernel==0.8.5 || echo "liger-kernel not downloaded: the kit skips its Liger runs"

# bitsandbytes: keep the CUDA 13.0 and CPU libraries only (torch 2.11+cu130 loads cuda130).
python3 - "$W" <<'EOF'
import sys, zipfile, glob, os, hashlib, base64
w = sys.argv[1]
for path in glob.glob(os.path.join(w, "bitsandbytes-*.whl")):
    if path.endswith(".cu130.whl"):
        continue
    keep = lambda n: not (n.startswith("bitsandbytes/libbitsandbytes_") and not n.endswith(("_cuda130.so", "_cpu.so")))
    out = path[:-4] + ".cu130.whl.tmp"
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        record = None
        for info in zin.infolist():
            if info.filename.endswith(".dist-info/RECORD"):
                record = info
                continue
            if keep(info.filename):
                zout.writestr(info, zin.read(info.filename))
        lines = [l for l in zin.read(record).decode().splitlines() if l and keep(l.split(",")[0])]
        zout.writestr(record, "\n".join(lines) + "\n")
    os.remove(path)
    # pip wants a valid wheel name: keep the original name, drop the marker
    os.rename(out, path)
    print("bitsandbytes trimmed to cuda130 + cpu:", os.path.getsize(path) // 1024, "KiB")
EOF

# The embedded model's tokenizer (and config, for the embedded shape), from the converted cache.
python3 - "$W/tokenizer" <<'EOF'
import shutil, sys
from pathlib import Path
from ftwizard.models.embedded import ensure_cached
src = ensure_cached(log=lambda *_: None)
for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
          "config.json", "generation_config.json"):
    if (src / f).exists():
        shutil.copy2(src / f, Path(sys.argv[1]) / f)
EOF

# What travels: tracked + untracked-not-ignored files, plus the carried .whl.
repo=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
whl=$(du -sb "$W" | cut -f1)
total=$((repo + whl))
printf 'repository %.1f MiB + .whl %.1f MiB = %.1f MiB (limit 64 MiB)\n' \
  "$(echo "$repo/1048576" | bc -l)" "$(echo "$whl/1048576" | bc -l)" "$(echo "$total/1048576" | bc -l)"
[ "$total" -lt $((64 * 1024 * 1024)) ] || { echo "too large to travel" >&2; exit 1; }
