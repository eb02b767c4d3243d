"""Regenerate notebooks/*.ipynb (without outputs) from the texts below: `python tools/make_notebooks.py`.
The notebooks are the product; this script only keeps their shared skeleton consistent (and their "study
settings" lines in step with the `tiny` preset)."""
from pathlib import Path

import nbformat as nbf

from vlpeft.catalog import METHODS
from vlpeft.study import presets

NB = Path(__file__).resolve().parent.parent / "notebooks"

# per method: the paper's text with its equations, the symbols mapped to the code, and the cell showing the code
TEXT = {
    "full": (r"""
The baseline of the study (paper §III-A): every parameter of the VLP — vision encoder, text encoder and text
decoder — is updated on the downstream data. It is the reference line of the paper's Fig. 3 and 4 and the most
expensive point of Fig. 5 (cost = data size × fine-tunable parameters). Nothing is injected: the registry
only leaves every parameter trainable.""", "", """from vlpeft import methods

nb.source(methods.apply_method, contains="requires_grad_")"""),
    "prompt": (r"""
Paper §III-B, eq. 2: prompt-tuning prepends $p$ learned vectors to the input embeddings of a text tower,

$$\arg\min_{\mathbf{p}} \mathcal{L}\big(F([\mathbf{p} : \mathbf{x}]), \mathbf{y}\big), \qquad
\mathbf{p} \in \mathbb{R}^{p \times d},$$

and the transformer itself stays frozen. In BLIP the prompts go in front of the caption decoder's input
(captioning) and in front of the question encoder's input *and* the answer decoder's (VQA).""",
               r"""| paper | code | here |
|---|---|---|
| $\mathbf{p} \in \mathbb{R}^{p\times d}$ | `prompt_embeddings`, shape (p, d) | p = Table II's size knob (2 … 128), d the tower's width |
| $\mathbf{x}$ | `tower.embeddings.word_embeddings(input_ids)`, (B, T, d) | the text's embeddings |
| $[\mathbf{p} : \mathbf{x}]$ | `torch.cat([P.expand(B, -1, -1), words], dim=1)` | (B, p + T, d); the p outputs are dropped again |""",
               """from vlpeft.methods.prompt import PromptTuning

nb.source(PromptTuning.start)"""),
    "prefix": (r"""
Paper §III-B, eq. 3: prefix-tuning prepends learned tokens to the hidden states of *every* transformer block,

$$\arg\min_{\{\mathbf{p}_i\}_1^n} \mathcal{L}\big(f^p_n \circ \dots \circ f^p_1(\mathbf{x}), \mathbf{y}\big), \qquad
\mathrm{head} = \mathrm{Attn}\big(xW_q, [P_k; xW_k], [P_v; xW_v]\big).$$

As in Li & Liang, the prefixes are re-parameterised during training by an MLP, $[P_k, P_v]_{1..L} =
\mathrm{MLP}(P')$, and folded into the plain prefixes for saving and inference. They enter through BLIP's own KV
cache, so the attention code runs unchanged.""",
               r"""| paper | code | here |
|---|---|---|
| $\mathbf{p}_i$ (block i) | `kv()[i]`: $[P_k, P_v]$, shape (2, p, d) | p = the size knob, L blocks |
| re-parameterisation | `prefix_mlp(prefix_tokens)`: d → d → 2·L·d | $P' \in \mathbb{R}^{p\times d}$ = `prefix_tokens` |
| $[P_k; xW_k]$, $[P_v; xW_v]$ | the cache filled before the text's own keys and values | the text takes positions p … p+T−1 |""",
               """from vlpeft.methods.prefix import PrefixTuning

display(nb.source(PrefixTuning.kv))
nb.source(PrefixTuning.start)"""),
    "lora": (r"""
Paper §III-C, eq. 9–15: LoRA adds a low-rank update to the query and key projections of every multi-head
attention (self-attention, $\mathbf{g} = \mathbf{x}$, and cross-attention),

$$\mathbf{h}_i^j = \mathrm{Attn}\big(\mathbf{x}(\mathbf{W}_q^j + \boldsymbol{\Phi}_{i,1}),\;
\mathbf{g}(\mathbf{W}_k^j + \boldsymbol{\Phi}_{i,2}),\; \mathbf{g}\mathbf{W}_v^j\big), \qquad
\boldsymbol{\Phi}_{i,m} = \mathbf{B}\mathbf{A}, \quad \mathbf{B} \in \mathbb{R}^{d\times r},\;
\mathbf{A} \in \mathbb{R}^{r\times d/k}.$$

As in Hu et al. and peft, one update acts on the whole $d \times d$ projection (all $k$ heads at once: $\mathbf{B}$
shared, one $\mathbf{A}$ block per head), scaled by $\alpha/r$; the zero-initialised factor makes the injected
model start equal to the base model. Implemented with peft's `LoraConfig` / `inject_adapter_in_model`.""",
               r"""| paper | code (peft) | here |
|---|---|---|
| $\mathbf{B} \in \mathbb{R}^{d\times r}$ | `lora_A.weight`ᵀ (random init) | r = Table II's rank (2 … 32) |
| $\mathbf{A} \in \mathbb{R}^{r\times d}$ | `lora_B.weight`ᵀ (zero init) | so $\boldsymbol{\Phi} = 0$ at the start |
| $\mathbf{x}\boldsymbol{\Phi}$ | `lora_B(lora_A(dropout(x))) * scaling` | scaling = α/r = 1 (α = r) |
| $k$ | the number of heads | — |""",
               """import peft.tuners.lora.layer

from vlpeft.methods import lora

display(nb.source(peft.tuners.lora.layer.Linear.forward, contains="lora_B(lora_A("))
nb.source(lora.target_regex)"""),
    "serial_adapter": (r"""
Paper §III-C, eq. 5 and 8 (Houlsby et al.): a bottleneck follows the multi-head attention and the FFN of each
block, before the skip connection and LayerNorm (AL):

$$f_i^{sa}(\mathbf{x}) = AL \circ A^s_{i,2} \circ FFN \circ AL \circ A^s_{i,1} \circ MHA(\mathbf{x}, \mathbf{x}),
\qquad A(\mathbf{x}) = \mathrm{ReLU}(\mathbf{x}\mathbf{W}_{down})\mathbf{W}_{up} + \mathbf{x}.$$

In BLIP's post-LN blocks that is $\mathrm{LN}(F(x) + A(F(x)) + x)$ after self-attention, cross-attention and FFN.""",
               r"""| paper | code | here |
|---|---|---|
| $\mathbf{W}_{down} \in \mathbb{R}^{d\times l}$ | `adapter_down` | l = h, Table II's hidden size |
| $\mathbf{W}_{up} \in \mathbb{R}^{l\times d}$ | `adapter_up` (zero init) | so A(x) = x at the start |
| $+\,\mathbf{x}$ in eq. 8 | `y + self.adapter(y)` | y = the sub-layer's output projection |""",
               """from vlpeft.methods.adapter import Bottleneck, SerialAdapter

display(nb.source(Bottleneck.forward))
nb.source(SerialAdapter.forward)"""),
    "parallel_adapter": (r"""
Paper §III-C, eq. 6–8 (He et al.): the same bottleneck is fed the block's *input* and added beside the
multi-head attention and beside the FFN:

$$h_{med} = AL\big(A^p_{i,1}(\mathbf{x}) + MHA(\mathbf{x}, \mathbf{x})\big), \qquad
f_i^{pa}(\mathbf{x}) = AL\big(A^p_{i,2}(h_{med}) + FFN(h_{med})\big).$$

In BLIP's post-LN blocks that is $\mathrm{LN}(F(x) + A(x) + x)$ at self-attention, cross-attention and FFN.""",
               r"""| paper | code | here |
|---|---|---|
| $\mathbf{W}_{down}$, $\mathbf{W}_{up}$ | `adapter_down`, `adapter_up` (zero init) | h = Table II's hidden size |
| $A(\mathbf{x}) + MHA(\mathbf{x})$ inside AL | `self.base(hidden_states, input_tensor + self.adapter(input_tensor))` | BLIP's output module computes LN(dense(F) + residual) |""",
               """from vlpeft.methods.adapter import Bottleneck, ParallelAdapter

display(nb.source(Bottleneck.forward))
nb.source(ParallelAdapter.forward)"""),
}

PARAMS = """config = dict(                  # a RunConfig; a sweep replaces it with the whole config of its cell
    task="caption",                # caption: consistent with pre-training, CIDEr | vqa: inconsistent, accuracy
    method="{method}",
    size={size},                   # {knob}
    tune_classifier=False,         # "+ classifier": also fine-tune the decoder's LM head
    data_ratio=0.5,                # fraction of the training split
    seed=0,
    steps=8,                       # caption: iterations
    warmup_steps=2,
    epochs=1,                      # vqa: epochs
    warmup_per_ratio=2,            # vqa: warm-up steps per unit of data ratio
    batch_size=8,
    eval_every=4,
    eval_size=8,
    test_size=8,
    lr=1e-3,
)
world = "smoke"     # smoke: seconds, numbers mean nothing | embedded: the study's world | real: BLIP on COCO
progress = True
show = True         # the checks, examples and curve; a sweep turns them off for speed

# The study's own settings (the tiny preset's captioning cell at the reference size, draw 0 and its seed 0; the
# draw's 6000-step pre-training takes about 1.5 h, cached; "embedded" is the 1000-step one, minutes), uncomment:
# world = "embedded-L6000-p0"
# config = dict(task="caption", method="{method}", size={size}, data_ratio=1.0, seed=0, lr={lr},
#               {study})"""


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
    nb.metadata.update(kernel_metadata())
    return nb


def kernel_metadata() -> dict:
    """The metadata JupyterLab writes when the kernel connects, taken from the installed ipykernel (its language
    info includes the Python version): committed as is, opening a notebook does not mark it modified."""
    from ipykernel.ipkernel import IPythonKernel
    from ipykernel.kernelspec import get_kernel_dict
    spec = get_kernel_dict()
    return {"kernelspec": {"name": "python3", "display_name": spec["display_name"], "language": spec["language"]},
            "language_info": dict(IPythonKernel.language_info)}


def study_settings(method: str) -> tuple[str, str]:
    from vlpeft.worlds.assets import get_world
    base = presets.tiny_base(get_world("embedded").world)["caption"]
    lr = METHODS[method].embedded_lr["caption"]
    return f"{lr:g}", ", ".join(f"{k}={v}" for k, v in base.items())


def heading(m) -> str:
    return f"{m.title[0].upper()}{m.title[1:]} ({m.family} {'composition' if m.family != 'full' else 'baseline'})"


def text_of(method: str) -> tuple[str, str, str]:
    """A method's prose, symbol table and code cell: TEXT's, or for a method without an entry there, its file's
    docstring (the paper's equation, in the method's own words) and its `apply`, read from the package."""
    if method in TEXT:
        return TEXT[method]
    import importlib
    module, _, fn = METHODS[method].impl.partition(":")
    doc = importlib.import_module(module).__doc__ or ""
    return "\n" + doc.strip(), "", f"import {module}\n\nnb.source({module}.{fn})"


def method_notebook(method: str):
    m = METHODS[method]
    intro, symbols, source_cell = text_of(method)
    lr, study = study_settings(method)
    cells = [
        md(f"# {heading(m)}\n{intro}\n\n"
           "This notebook is one cell of the study: `vlpeft sweep` runs it through papermill with the parameters "
           "replaced by a whole run config. Run top to bottom as it is, it does a seconds-long smoke run; the "
           "commented lines of the parameters cell carry the study's own settings."),
        code(PARAMS.format(size=m.default_size or 0, knob=m.knob or f"unused by {m.title}", method=method,
                           lr=lr, study=study), tags=["parameters"]),
        code("""from vlpeft import nb
from vlpeft.train import run

cfg = nb.run_config(config, world, progress)
nb.banner(world)"""),
        md("## The equation and its code\n" + (symbols + "\n\n" if symbols else "")
           + "The lines below are read from the package itself (`vlpeft/methods/`, or peft's for LoRA), "
             "not copied here."),
        code(source_cell),
        md("## Checks\nThe injected model at its initialisation against the base model, and the trainable count "
           "against its closed-form formula (both asserted), beside the count on the BLIP-base shape, where the "
           "paper's percentages apply (the tiny model is 128 wide, BLIP-base 768)."),
        code("if show:\n    nb.identity_check(cfg)\n    display(nb.count_check(cfg))\n    nb.show_method(cfg)"),
        md("## One fine-tuning run\n`run` trains with the paper's schedule, evaluates on the validation split "
           "every `eval_every` steps, and reports the best validation metric and the test metric of that "
           "checkpoint; the run folder (named from the parameters) holds `config.json`, `curve.json`, "
           "`metrics.json` and the method's weights."),
        code("metrics = run(cfg, progress=progress)\n{k: metrics[k] for k in ('status', 'metric', 'best_val', 'test',\n"
             "                         'trainable_params', 'trainable_pct', 'n_train', 'wall_s', 'compiled')}"),
        md("## What it produced\nA few test examples, generated by the saved method weights, beside their "
           "references; then the validation curve (paper Fig. 6–10)."),
        code("if show:\n    display(nb.examples(cfg))\n    display(nb.curve_chart(cfg.out_dir))"),
    ]
    return notebook(cells)


def pretrain_notebook():
    return notebook([
        md("""# Pre-training the embedded VLP
The study needs a vision-language model that was pre-trained on image–text pairs, so that captioning is
*consistent* with pre-training and VQA is not. The embedded world uses a tiny BLIP (transformers' own BLIP
classes) pre-trained here on the synthetic shapes world with five objectives (`vlpeft/worlds/pretrain.py`). Four
are shared by both recipes: captioning with the prompt `a picture of` (LM), image–text matching (ITM), and — the
footing BERT gives BLIP — language modelling and masked language modelling on a text-only corpus holding every word
a caption or answer uses, at random position offsets. It never sees a question.

**Two recipes, the paper's model and BLIP.** The paper fine-tunes **mPLUG** (§IV-A); our stand-in is built from
BLIP's classes. The recipes differ in the third objective and in what the VQA answer decoder reads:

| | mPLUG's recipe (`embedded`, the study's default) | BLIP's recipe (`embedded-blip`, the second family) |
|---|---|---|
| third objective | **PrefixLM** (the mPLUG paper's prefix language modelling): a caption is cut at a random word; the text encoder reads the prefix over the image, the decoder *continues* the caption | **ELM**: the decoder produces the caption from the text encoder's states of `a picture of` (BLIP's decoder starts a sentence) |
| VQA answer decoder reads | the image states *and* the question states, `[image; question]` (mPLUG's `model_vqa_mplug.py`) | the question states only (BLIP's `blip_vqa.py`) |

The route travels with the checkpoint (its `config.json` says `vqa_route`), so fine-tuning, decoding and every
evaluation read what pre-training trained. The same study run from both (`make study`, and `vlpeft study --preset
tiny-blip`) answers the paper's own open question, the influence of the base model (`reports/families`).

**The image half of `[image; question]`.** In mPLUG-base (`config_bert_stride3.json`, `stride_layer: 3`) the image
states its answer decoder reads have passed a fusion layer that also updates them. BLIP's architecture has no such
layer — its text encoder cross-attends to the image and leaves the image states as they are — so on our `mplug`
route the image half is the vision tower's output, as in mPLUG-large, and it is frozen under every PEFT method (only
full fine-tuning trains the tower). A PEFT run can change how the question is encoded and how the answer decoder
reads image and question, never the image states themselves; in mPLUG-base its fusion layer could move them."""),
        code("""world = "smoke"            # smoke (seconds) | embedded (mPLUG's recipe, 1000 steps: a few minutes, cached;
                           # the study's draws: embedded-L6000-p0, -p1, -p2) | embedded-blip (BLIP's recipe)""",
             tags=["parameters"]),
        code("""import json
from pathlib import Path

from vlpeft import nb
from vlpeft.worlds import assets

nb.repo_root_cwd()
ready = assets.prepare(world)
card = json.loads((Path(ready.model_path.format(task="caption")).parent / "card.json").read_text())
vqa_config = json.loads(Path(ready.model_path.format(task="vqa"), "config.json").read_text())
display(nb.banner(world))
print(f"recipe: {card['config']['recipe']}; the VQA checkpoint's answer-decoder route: {vqa_config['vqa_route']}")
{k: card[k] for k in ("corpus_images", "corpus_pairs", "text_sentences", "steps", "wall_s", "params",
                      "final_losses", "zero_shot", "shift_loss")}"""),
        md("The zero-shot numbers (before any fine-tuning) are the point of the exercise: captioning should "
           "already score well, VQA should not. `shift_loss` is the captioning loss with the text moved p "
           "positions on, what a prompt or prefix of length p costs before it has learned anything."),
    ])


def analysis_notebook():
    from vlpeft.study.report import SECTIONS
    cells = [
        md("""# The study's answer, as the paper's §V
Every run of a study in one table, the paper's figures redrawn from it (Fig. 3/4: score against data ratio and
parameter size; Fig. 5: score against cost; Fig. 6–10: validation curves), and each of the paper's eleven claims
tested by a rule declared before any run. One section per finding, as in the paper; each claim's forest plot shows
every part it rests on — the effect in score points, its 90 % interval, the margin it is judged against, the
region where the interval means *yes* (shaded), and the mark as colour. A study of several pre-training draws
(the unit of replication then: each draw's effect over its own runs, the interval over draws) shows under every
part a row per draw, its own estimate as a ring — green on the side of the bound where the part reads *yes*, red
on the other — and the verdict table says which answers depend on the draw.

This notebook never trains. It reads `runs/<study>/` when that holds runs (after `make study`), else the study's
committed report, `reports/<study>/runs.csv`. In a live JupyterLab kernel the charts are interactive — tooltips
name each run and seed, and a click on a method in a legend picks it — with no network; executed headless they are
static SVG and PNG."""),
        code("""study = "tiny"     # tiny (make study) | dial (make dial) | paper (GPU nodes) | smoke | a runs/… or reports/… folder
beside = "tiny-blip"  # the same grid from the other pre-training recipe, shown beside it at the end ("": none)
out_dir = ""       # write the HTML report there too (e.g. "reports/mine"); "" writes nothing""",
             tags=["parameters"]),
        code("""from IPython.display import Markdown, display

from vlpeft import nb
from vlpeft.study import claims, report

nb.repo_root_cwd()
s = report.load_or_say(study)   # None, with the command that fills it, when the study has no runs
report.summary(s)"""),
    ]
    for sec in SECTIONS:
        cells += [md(f"## {sec.title}"), code(f'report.show(s, "{sec.key}")')]
    cells += [
        md("## The base model: two pre-training recipes (beyond the paper)\nThe paper leaves \"the influence of "
           "the base model\" to future work. The same grid run from the tiny BLIP pre-trained with mPLUG's recipe "
           "and with BLIP's (`00_pretrain`): what the recipe changes, the eleven verdicts side by side, and each "
           "method's score at its reference size and 100 % data (`vlpeft compare` writes the same as "
           "`reports/families`)."),
        code("""other = report.load_or_say(beside) if beside and s is not None else None
if other is not None:
    report.show_families({report.label_of(s): s, report.label_of(other): other})"""),
        md("## Verdict rules (declared before the runs)\nEach claim's rule is its function's docstring in "
           "`vlpeft/study/claims/`; the general rules come first."),
        code("display(Markdown(claims.VERDICT_RULES))"),
        md("## The HTML report\nThe same sections as one offline page (`vlpeft report --study runs/<study>` writes "
           "it too)."),
        code("""if s is not None and out_dir:
    print(report.write_report(s, out_dir) / "index.html")"""),
    ]
    return notebook(cells)


if __name__ == "__main__":
    NB.mkdir(exist_ok=True)
    nbf.write(pretrain_notebook(), NB / "00_pretrain.ipynb")
    for m in METHODS.values():
        nbf.write(method_notebook(m.name), NB / f"{m.notebook}.ipynb")
    nbf.write(analysis_notebook(), NB / "99_analysis.ipynb")
