#!/usr/bin/env bash
# Screenshots of the committed report and of 99_analysis as JupyterLab shows it, taken in a clean checkout of this
# repository (nothing but the project in JupyterLab's file browser): headless Chromium, no network.
#   tools/screenshots.sh   → reports/{tiny,tiny-blip,families,dial}/screenshot.png,
#                            reports/notebooks/{99_analysis,04_lora_smoke}.png
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/.venv"
tmp="$(mktemp -d)"
git clone -q "$repo" "$tmp/vlpeft"
for study in tiny tiny-blip families dial; do                 # the reports as they stand, committed or not
    rm -rf "$tmp/vlpeft/reports/$study" && cp -r "$repo/reports/$study" "$tmp/vlpeft/reports/"
done
cd "$tmp/vlpeft"
chrome=(chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update
        --disable-sync --no-first-run --hide-scrollbars --user-data-dir="$tmp/chrome")
for study in tiny tiny-blip families dial; do
    "${chrome[@]}" --window-size=1400,3000 --screenshot="$repo/reports/$study/screenshot.png" \
        "file://$tmp/vlpeft/reports/$study/index.html" 2>/dev/null
done
# the analysis notebook, executed in place on the committed study, then opened in JupyterLab
"$venv/bin/papermill" --cwd notebooks notebooks/99_analysis.ipynb notebooks/99_analysis.ipynb >"$tmp/pm.log" 2>&1 || { tail -5 "$tmp/pm.log"; exit 1; }
"$venv/bin/papermill" --cwd notebooks notebooks/04_lora.ipynb notebooks/04_lora.ipynb -p progress False >"$tmp/pm.log" 2>&1 || { tail -5 "$tmp/pm.log"; exit 1; }
rm -rf data checkpoints runs cache                          # what the smoke run wrote: not shown in the file browser
settings="$tmp/jsettings/@jupyterlab/apputils-extension"                # no "news?" pop-up over the notebook
mkdir -p "$settings" && echo '{"fetchNews": "false", "checkForUpdates": false}' > "$settings/notification.jupyterlab-settings"
JUPYTER_CONFIG_DIR="$tmp/jcfg" JUPYTERLAB_SETTINGS_DIR="$tmp/jsettings" JUPYTERLAB_WORKSPACES_DIR="$tmp/jws" "$venv/bin/jupyter" lab --no-browser --port 8899 --ServerApp.token='' --ServerApp.password='' \
    --ServerApp.root_dir="$tmp/vlpeft" $([ "$(id -u)" = 0 ] && echo --allow-root) >"$tmp/lab.log" 2>&1 &
lab=$!
trap 'kill $lab 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 60); do curl -s -o /dev/null http://localhost:8899/lab && break; sleep 1; done   # the server is up
curl -s -o /dev/null http://localhost:8899/lab || { echo "JupyterLab did not start:"; tail -5 "$tmp/lab.log"; exit 1; }
mkdir -p "$repo/reports/notebooks"
for nb in 99_analysis 04_lora; do
    shot="$repo/reports/notebooks/$nb.png"
    [ "$nb" = 04_lora ] && shot="$repo/reports/notebooks/04_lora_smoke.png"
    "${chrome[@]}" --window-size=1600,2600 --virtual-time-budget=30000 --screenshot="$shot" \
        "http://localhost:8899/lab/tree/notebooks/$nb.ipynb" 2>/dev/null
done
echo "reports/{tiny,tiny-blip,families,dial}/screenshot.png reports/notebooks/{99_analysis,04_lora_smoke}.png"
