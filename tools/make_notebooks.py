"""Regenerate notebooks/*.ipynb (without outputs) from the texts below: `python tools/make_notebooks.py`.
The notebooks are the product; this script only keeps their shared skeleton consistent."""
from pathlib import Path

import nbformat as nbf

NB = Path(__file__).resolve().parent.parent / "notebooks"

METHODS = {
    "01_full_finetune": ("full", 0, "Full fine-tuning", """
The baseline of the study (paper §III-A): every parameter of the VLP — vision encoder, text encoder and text
decoder — is updated on the downstream data. It is the reference line in the paper's Fig. 3 and 4 and the most
expensive point of Fig. 5 (cost = data size × fine-tunable parameters)."""),
    "02_prompt_tuning": ("prompt", 8, "Prompt-tuning (embedding composition)", r"""
Paper §III-B, eq. 2. A sequence of $p$ learned vectors $P \in \mathbb{R}^{p \times d}$ is prepended to the
input embeddings of a text tower, $H_0 = [P; E(x)]$; the transformer itself is frozen. In BLIP the prompts go
in front of the caption decoder's input (captioning) and of the question encoder's input (VQA). The size knob
of Table II is the prompt length $p$ (2 … 128); the method trains $p \cdot d$ numbers per tower — the paper
notes that prompt-tuning trains less than 0.16 % of the parameters."""),
    "03_prefix_tuning": ("prefix", 8, "Prefix-tuning (embedding composition)", r"""
Paper §III-B, eq. 3. Every self-attention block gets $p$ learned key and value vectors,
$\mathrm{head} = \mathrm{Attn}(xW_q, [P_k; xW_k], [P_v; xW_v])$. As in Li & Liang, the prefixes are
re-parameterised during training by an MLP $[P_k, P_v]_{1..L} = \mathrm{MLP}(P')$, and folded into plain
prefixes for saving and inference. The size knob is the prefix length $p$."""),
    "04_lora": ("lora", 8, "LoRA (layer composition)", r"""
Paper §III-C, eq. 9–15. A low-rank update is added to the query and key projections of every attention
(self- and cross-attention): $h = xW_0 + \frac{\alpha}{r} x A B$ with $A \in \mathbb{R}^{d \times r}$,
$B \in \mathbb{R}^{r \times k}$ zero-initialised, so the injected model starts equal to the base model.
The size knob is the rank $r$ (2 … 32). Implemented with peft's `LoraConfig`."""),
    "05_serial_adapter": ("serial_adapter", 16, "Serial adapter (layer composition)", r"""
Paper §III-C, eq. 5 and 8 (Houlsby et al.). A bottleneck $A(x) = \mathrm{ReLU}(xW_{down})W_{up}$ follows the
output projection of each attention and of each FFN, before the residual and LayerNorm:
$\mathrm{LN}(F(x) + A(F(x)) + x)$. $W_{up}$ starts at zero. The size knob is the hidden size $h$."""),
    "06_parallel_adapter": ("parallel_adapter", 16, "Parallel adapter (layer composition)", r"""
Paper §III-C, eq. 6–8 (He et al.). The same bottleneck is fed the sub-layer's *input* and added beside the
attention and beside the FFN: $\mathrm{LN}(F(x) + A(x) + x)$. The size knob is the hidden size $h$."""),
}

PARAMS = """config = dict(                  # a RunConfig; a sweep replaces it with the whole config of its cell
    task="caption",                # caption: consistent with pre-training, CIDEr | vqa: inconsistent, accuracy
    method="{method}",
    size={size},                   # {knob}
    tune_classifier=False,         # "+ classifier": also fine-tune the decoder's LM head
    data_ratio=0.5,                # fraction of the training split
    seed=0,
    steps=8, warmup_steps=2,       # caption: iterations and warm-up; embedded study 120, 12; paper 4000, 400
    epochs=1, warmup_per_ratio=2,  # vqa: epochs and warm-up × ratio; embedded study 2, 40; paper 10, 800
    batch_size=8, eval_every=4, eval_size=8, test_size=8, lr=1e-3,
)
world = "smoke"     # smoke: seconds, numbers mean nothing | embedded: the study's world | real: BLIP on COCO
progress = True
show = True         # the look at the injected module and the curve plot; a sweep turns it off for speed"""

KNOBS = {"full": "unused by full fine-tuning", "prompt": "prompt length p", "prefix": "prefix length p",
         "lora": "LoRA rank r", "serial_adapter": "adapter hidden size h", "parallel_adapter": "adapter hidden size h"}


def code(src, tags=()):
    c = nbf.v4.new_code_cell(src.strip())
    if tags:
        c.metadata["tags"] = list(tags)
    return c


def md(src):
    return nbf.v4.new_markdown_cell(src.strip())


def notebook(cells):
    nb = nbf.v4.new_notebook()
    nb.cells = cells
    for i, c in enumerate(nb.cells):  # stable ids: regenerating leaves unchanged notebooks unchanged
        c.id = f"cell-{i}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def method_notebook(name, method, size, title, text):
    cells = [
        md(f"# {title}\n{text}\n\nThis notebook is one cell of the study: `vlpeft sweep` runs it through "
           "papermill with the parameters below replaced. Run top to bottom as it is, it does a seconds-long smoke "
           "run on a tiny world; set `world = \"embedded\"` and the study's schedule (`steps=120, warmup_steps=12`) "
           "for a real one."),
        code(PARAMS.format(size=size, knob=KNOBS[method], method=method), tags=["parameters"]),
        code("""from vlpeft import nb
from vlpeft.train import run

cfg = nb.run_config(config, world, progress)
cfg"""),
        md("## What the method injects\nThe first block of the text decoder after injection, and the trainable "
           "count in peft's format (the method's parameters carry a `prompt_`, `prefix_`, `lora_` or `adapter_` "
           "prefix; everything else is frozen)."),
        code("if show:\n    nb.show_method(cfg)"),
        md("## One fine-tuning run\n`run` trains with the paper's schedule, evaluates on the validation split "
           "every `eval_every` steps, and reports the best validation metric and the test metric of that "
           "checkpoint; the run folder holds `config.json`, `curve.json`, `metrics.json` and the method's weights."),
        code("metrics = run(cfg, progress=progress)\n{k: metrics[k] for k in ('status', 'metric', 'best_val', "
             "'test', 'trainable_params', 'trainable_pct', 'n_train', 'wall_s')}"),
        md("## Validation curve (paper Fig. 6–10)"),
        code("nb.curve_chart(cfg.out_dir) if show else None"),
    ]
    return notebook(cells)


def pretrain_notebook():
    return notebook([
        md("""# Pre-training the embedded VLP
The study needs a vision-language model that was pre-trained on image–text pairs, so that captioning is
*consistent* with pre-training and VQA is not. The embedded world uses a tiny BLIP (transformers' own BLIP
classes) pre-trained here on the synthetic shapes world with three objectives: captioning with the prompt
`a picture of` (LM), image–text matching (ITM) on the text encoder, and captioning from the text encoder's
states (the route VQA uses). It never sees a question. See `vlpeft/pretrain.py`."""),
        code("""world = "smoke"            # smoke (seconds) | embedded (the study's model, a few minutes, cached)""",
             tags=["parameters"]),
        code("""import json
from pathlib import Path
from vlpeft import assets, nb

nb.repo_root_cwd()
ready = assets.prepare(world)
card = json.loads((Path(ready.model_path.format(task="caption")).parent / "card.json").read_text())
{k: card[k] for k in ("corpus_images", "corpus_pairs", "steps", "wall_s", "params", "final_losses", "zero_shot")}"""),
        md("The zero-shot numbers (before any fine-tuning) are the point of the exercise: captioning should "
           "already score well, VQA should not."),
    ])


def analysis_notebook():
    return notebook([
        md("""# The study's answer: figures and claims
Aggregates every `runs/<study>/…/metrics.json` into one table, redraws the paper's figures (Fig. 3/4: score
vs data ratio and vs parameter size; Fig. 5: score vs cost; Fig. 6–10: validation curves), and tests each of
the paper's nine claims with a pre-declared rule. The rules are printed below *before* the verdicts; they were
written before any result was looked at and are not tuned to make a claim pass."""),
        code("""study_dir = "runs/smoke"      # runs/tiny after `make study`; runs/paper on GPU nodes
out_dir = "reports/smoke"
run_smoke_if_empty = True     # so that the notebook runs top to bottom on a fresh clone""", tags=["parameters"]),
        code("""from pathlib import Path
from IPython.display import Markdown, display
from vlpeft import claims, figures, nb, results, sweep

nb.repo_root_cwd()
if run_smoke_if_empty and not list(Path(study_dir).glob("*/*/*/metrics.json")):
    sweep.execute(sweep.grid("smoke", Path(study_dir).name), workers=1)
runs = results.load_runs(study_dir)
runs.groupby(["task", "status"]).size()"""),
        md("## Verdict rules (decided before looking at results)"),
        code("display(Markdown(claims.VERDICT_RULES))"),
        md("## Claims"),
        code("claims.evaluate_claims(runs[runs.status == 'complete'])"),
        md("## Figures and the HTML report"),
        code("""report = figures.write_report(study_dir, out_dir)
print(Path(report) / "index.html")"""),
        code("""for task in sorted(runs[runs.status == "complete"].task.unique()):
    display(figures.fig_data_ratio(runs[runs.status == "complete"], task))
    display(figures.fig_param_size(runs[runs.status == "complete"], task))"""),
    ])


if __name__ == "__main__":
    NB.mkdir(exist_ok=True)
    nbf.write(pretrain_notebook(), NB / "00_pretrain.ipynb")
    for name, (method, size, title, text) in METHODS.items():
        nbf.write(method_notebook(name, method, size, title, text), NB / f"{name}.ipynb")
    try:  # the analysis notebook needs vlpeft.figures/claims/results (issue 7); written once they exist
        import vlpeft.claims, vlpeft.figures, vlpeft.results  # noqa: F401, E401
        nbf.write(analysis_notebook(), NB / "99_analysis.ipynb")
    except ImportError:
        print("vlpeft.figures/claims/results not there yet: 99_analysis.ipynb not written")
