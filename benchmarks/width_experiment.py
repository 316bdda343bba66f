"""Held-out loss against width: the analog of the paper's Figure 1.

Sernau (2024, "Infinite Width Models That Work") plots test loss against the
width of a one-hidden-layer ReLU network for several training rules and asks
whether the infinite-width ADAM* model closes the gap that the classic (SGD)
neural tangent kernel leaves to a network trained with Adam. This script does
the same on two bundled tasks, Friedman #1 regression (squared loss) and
digits (softmax cross-entropy), for widths 64, 256, 1024, 4096 and infinity:

- ``MLP, Adam (all layers)``: ``MLPRegressor`` / ``MLPClassifier`` with one
  hidden ReLU layer of that width, every layer trained with Adam;
- ``frozen layer, Adam readout``: the hidden layer frozen at its random
  initialisation and the readout trained with true per-weight Adam
  (``width=n, optimizer="adam"``); finite width only;
- ``SGD (kernel)``: the same readout trained with SGD (``optimizer="sgd"``),
  which at infinite width is the classic kernel gradient descent;
- ``ADAM* (kernel)``: the same readout trained with ADAM*
  (``optimizer="adam*"``), at infinite width the paper's model.

The three readout rows use ``kernel="nngp"`` (frozen random body, only the
readout trains, the construction of the paper's Figure 1) with the same random
network for a given seed, so they differ only in their update rule.

Every method trains full batch for the same number of epochs (= steps), on
standardised inputs (and, for regression, targets standardised with the
training rows' statistics). Each method has its own grid of four learning
rates per task (``RATES``); for every width and seed the rate with the lowest
loss on a validation split (a quarter of the training rows) is refit on all
training rows and scored on the test rows (the other half of the data). The
split, the network and the MLP's initialisation change with the seed; the
table gives mean and standard deviation over seeds.

Run::

    python benchmarks/width_experiment.py            # the committed table and plot
    python benchmarks/width_experiment.py --quick    # a smoke run (1 seed, fewer rows)

It prints a markdown table and writes ``WIDTH.md`` and ``width_experiment.png``
beside this script (``--out DIR`` to write elsewhere). The plot needs
matplotlib (the package's ``plot`` extra).
"""

import argparse
import math
import os
import platform
import time
import warnings

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_digits, make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from threadpoolctl import threadpool_limits

from sklearn_adamntk import AdamStarNTKClassifier, AdamStarNTKRegressor

WIDTHS = (64, 256, 1024, 4096, None)  # None: infinite width

METHODS = {
    "mlp_adam": {"label": "MLP, Adam (all layers)", "finite_only": True},
    "frozen_adam": {"label": "frozen layer, Adam readout", "finite_only": True},
    "sgd": {"label": "SGD (kernel)", "finite_only": False},
    "adam*": {"label": "ADAM* (kernel)", "finite_only": False},
}

# Four rates per method and task, a factor of about 3 apart, placed where a
# wider scan (one seed, widths 64 to infinity) found each method's best rate
# after this many full-batch steps (WIDTH.md lists the rates chosen). Kernel
# SGD on the squared loss is best just below its stability limit
# 2 / lambda_max(K / N), about 0.85 on these splits (it
# diverges at 0.9), so its
# regression grid doubles up to 0.8 instead; on the cross-entropy its steps
# are far smaller and it wants ~30.
RATES = {
    "friedman1": {
        "mlp_adam": (1e-3, 3e-3, 1e-2, 3e-2),
        "frozen_adam": (0.1, 0.3, 1.0, 3.0),
        "sgd": (0.1, 0.2, 0.4, 0.8),
        "adam*": (0.1, 0.3, 1.0, 3.0),
    },
    "digits": {
        "mlp_adam": (3e-4, 1e-3, 3e-3, 1e-2),
        "frozen_adam": (0.1, 0.3, 1.0, 3.0),
        "sgd": (3.0, 10.0, 30.0, 100.0),
        "adam*": (0.1, 0.3, 1.0, 3.0),
    },
}

TASKS = {
    "friedman1": {
        "kind": "regression",
        "loss": "MSE (standardised y)",
        "score": "R^2",
    },
    "digits": {"kind": "classification", "loss": "log-loss", "score": "accuracy"},
}


def load_task(task, max_rows=None):
    """``X, y`` of a task, at most ``max_rows`` rows (a fixed subsample)."""
    if task == "friedman1":
        X, y = make_friedman1(n_samples=1200, noise=1.0, random_state=0)
    else:
        X, y = load_digits(return_X_y=True)
    if max_rows is not None and max_rows < len(y):
        rows = np.random.default_rng(0).choice(len(y), max_rows, replace=False)
        X, y = X[rows], y[rows]
    return X, y


def make_model(task, method, width, learning_rate, epochs, seed, n_rows):
    """One method at one width and rate, inside a standardising pipeline.

    Every model runs exactly ``epochs`` full-batch steps on all the rows it
    is given: no stopping rule (the package's ``early_stopping="auto"`` would
    hold rows out and keep the best epoch), and stopping on the training loss
    switched off (``tol=0`` and more patience than epochs).
    """
    regression = TASKS[task]["kind"] == "regression"
    if method == "mlp_adam":
        mlp = MLPRegressor if regression else MLPClassifier
        model = mlp(
            hidden_layer_sizes=(width,),
            activation="relu",
            solver="adam",
            learning_rate_init=learning_rate,
            batch_size=n_rows,  # full batch, as the kernel models
            max_iter=epochs,
            tol=0.0,
            n_iter_no_change=epochs + 1,
            random_state=seed,
        )
        # float32 halves the MLP's time, the slow part of the experiment, and
        # changes nothing an Adam step cares about at this scale.
        steps = [StandardScaler(), FunctionTransformer(_as_float32), model]
    else:
        ntk = AdamStarNTKRegressor if regression else AdamStarNTKClassifier
        optimizer = {"frozen_adam": "adam", "sgd": "sgd", "adam*": "adam*"}[method]
        model = ntk(
            kernel="nngp",
            depth=1,
            width=width,
            optimizer=optimizer,
            learning_rate_init=learning_rate,
            batch_size=None,
            max_iter=epochs,
            early_stopping=False,
            tol=0.0,
            n_iter_no_change=epochs + 1,
            random_state=seed,
            n_jobs=1,
        )
        steps = [StandardScaler(), model]
    pipeline = make_pipeline(*steps)
    if regression:
        return TransformedTargetRegressor(pipeline, transformer=StandardScaler())
    return pipeline


def _as_float32(X):
    return np.asarray(X, dtype=np.float32)


def held_out_loss(task, model, X_train, y_train, X_test, y_test):
    """Fit ``model`` and return its test ``(loss, score)``.

    A fit that diverges (the package raises, an MLP's outputs overflow) gets
    an infinite loss, so that its rate is never chosen.
    """
    regression = TASKS[task]["kind"] == "regression"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            with np.errstate(all="ignore"):
                model.fit(X_train, y_train)
                if regression:
                    predicted = model.predict(X_test)
                else:
                    proba = model.predict_proba(X_test)
    except ValueError as exc:
        if "diverged" in str(exc) or "NaN" in str(exc) or "infinity" in str(exc):
            return math.inf, math.nan
        raise
    if regression:
        if not np.all(np.isfinite(predicted)):
            return math.inf, math.nan
        # The squared error in units of the training target's variance: the
        # loss on targets standardised with the training rows' statistics.
        loss = mean_squared_error(y_test, predicted) / np.var(y_train)
        return float(loss), float(r2_score(y_test, predicted))
    if not np.all(np.isfinite(proba)):
        return math.inf, math.nan
    classes = model.classes_
    loss = log_loss(y_test, proba, labels=classes)
    score = accuracy_score(y_test, classes[np.argmax(proba, axis=1)])
    return float(loss), float(score)


def one_run(task, method, width, X, y, seed, epochs, rates):
    """Choose the rate on a validation split, refit, score on the test rows.

    Returns ``(test_loss, test_score, chosen_rate)``.
    """
    stratify = y if TASKS[task]["kind"] == "classification" else None
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.5, random_state=seed, stratify=stratify
    )
    stratify = y_train if stratify is not None else None
    X_fit, X_val, y_fit, y_val = train_test_split(
        X_train, y_train, test_size=0.25, random_state=seed, stratify=stratify
    )
    validation = [
        held_out_loss(
            task,
            make_model(task, method, width, rate, epochs, seed, len(y_fit)),
            X_fit, y_fit, X_val, y_val,
        )[0]
        for rate in rates
    ]
    # Best validation loss first (ties to the smaller rate). A rate that was
    # stable on three quarters of the rows can still diverge on all of them;
    # then the next best is refit, so a row reports a trained model.
    for index in np.argsort(validation, kind="stable"):
        rate = rates[index]
        model = make_model(task, method, width, rate, epochs, seed, len(y_train))
        loss, score = held_out_loss(task, model, X_train, y_train, X_test, y_test)
        if math.isfinite(loss):
            break
    return loss, score, rate


def run(
    tasks=tuple(TASKS),
    methods=tuple(METHODS),
    widths=WIDTHS,
    seeds=(0, 1, 2, 3, 4),
    epochs=100,
    max_rows=None,
    verbose=True,
):
    """Every (task, method, width) over the seeds; one record each.

    A record holds ``task``, ``method``, ``width`` (None for infinite),
    ``loss_mean``, ``loss_std``, ``score_mean``, ``score_std``, per seed the
    ``rates`` chosen and the test ``losses`` and ``scores``, and ``seconds``
    (wall time of its fits).

    Everything runs on one thread (BLAS and Numba): on a shared two-core
    machine, BLAS threads spinning for a busy core slowed the MLP fits by up
    to 25x, and the experiment compares losses, not speed.
    """
    with threadpool_limits(limits=1):
        return _run(tasks, methods, widths, seeds, epochs, max_rows, verbose)


def _run(tasks, methods, widths, seeds, epochs, max_rows, verbose):
    records = []
    for task in tasks:
        X, y = load_task(task, max_rows)
        for method in methods:
            spec = METHODS[method]
            for width in widths:
                if width is None and spec["finite_only"]:
                    continue
                start = time.perf_counter()
                rates = RATES[task][method]
                runs = [
                    one_run(task, method, width, X, y, seed, epochs, rates)
                    for seed in seeds
                ]
                losses, scores, rates = (np.array(values) for values in zip(*runs))
                record = {
                    "task": task,
                    "method": method,
                    "width": width,
                    "loss_mean": float(np.mean(losses)),
                    "loss_std": float(np.std(losses)),
                    "score_mean": float(np.mean(scores)),
                    "score_std": float(np.std(scores)),
                    "rates": [float(rate) for rate in rates],
                    "losses": [float(loss) for loss in losses],
                    "scores": [float(score) for score in scores],
                    "seconds": time.perf_counter() - start,
                }
                records.append(record)
                if verbose:
                    print(
                        f"{task:10s} {spec['label']:28s} {width_label(width):>5s} "
                        f"loss {record['loss_mean']:.4f} +- {record['loss_std']:.4f}  "
                        f"rates {record['rates']}  {record['seconds']:.1f} s",
                        flush=True,
                    )
    return records


def width_label(width):
    return "inf" if width is None else str(width)


def markdown_table(records):
    """One markdown table per task: methods as rows, widths as columns,
    ``loss (std)`` then ``score (std)`` in each cell."""
    lines = []
    for task in dict.fromkeys(record["task"] for record in records):
        rows = [record for record in records if record["task"] == task]
        widths = list(dict.fromkeys(record["width"] for record in rows))
        spec = TASKS[task]
        lines.append(f"#### {task}: test {spec['loss']} / {spec['score']}")
        lines.append("")
        lines.append(
            "| method | " + " | ".join(width_label(w) for w in widths) + " |"
        )
        lines.append("|---|" + "---:|" * len(widths))
        for method in dict.fromkeys(record["method"] for record in rows):
            cells = []
            for width in widths:
                found = [
                    r for r in rows if r["method"] == method and r["width"] == width
                ]
                if not found:
                    cells.append("–")
                    continue
                r = found[0]
                cells.append(
                    f"{r['loss_mean']:.3f} ({r['loss_std']:.3f}) / "
                    f"{r['score_mean']:.3f} ({r['score_std']:.3f})"
                )
            label = METHODS[method]["label"]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Learning rate chosen on the validation split, per seed:")
        lines.append("")
        lines.append(
            "| method | " + " | ".join(width_label(w) for w in widths) + " |"
        )
        lines.append("|---|" + "---:|" * len(widths))
        for method in dict.fromkeys(record["method"] for record in rows):
            cells = []
            for width in widths:
                found = [
                    r for r in rows if r["method"] == method and r["width"] == width
                ]
                cells.append(
                    ", ".join(f"{rate:g}" for rate in found[0]["rates"])
                    if found
                    else "–"
                )
            label = METHODS[method]["label"]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(records, path):
    """Loss (top) and score (bottom) against width, one panel per task.

    The x axis is logarithmic; infinite width sits to the right of the
    largest finite width, past a break mark, with its own tick.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    tasks = list(dict.fromkeys(record["task"] for record in records))
    finite = sorted({r["width"] for r in records if r["width"] is not None})
    largest = finite[-1] if finite else 1
    infinity_x = largest * 8.0
    break_x = largest * math.sqrt(8.0)
    fig, axes = plt.subplots(
        2, len(tasks), figsize=(5.5 * len(tasks), 7.5), squeeze=False, sharex=True
    )
    for column, task in enumerate(tasks):
        spec = TASKS[task]
        for row, (key, name) in enumerate(
            [("loss", "test " + spec["loss"]), ("score", "test " + spec["score"])]
        ):
            ax = axes[row, column]
            for index, method in enumerate(METHODS):
                rows = [
                    r for r in records if r["task"] == task and r["method"] == method
                ]
                if not rows:
                    continue
                color = f"C{index}"
                label = METHODS[method]["label"]
                # Nudge each method sideways a little so error bars stay apart.
                nudge = 1.06 ** (index - (len(METHODS) - 1) / 2)
                sized = [r for r in rows if r["width"] is not None]
                ax.errorbar(
                    [r["width"] * nudge for r in sized],
                    [r[key + "_mean"] for r in sized],
                    yerr=[r[key + "_std"] for r in sized],
                    color=color, marker="o", capsize=3, label=label,
                )
                unbounded = [r for r in rows if r["width"] is None]
                if unbounded:
                    r = unbounded[0]
                    ax.errorbar(
                        [infinity_x * nudge], [r[key + "_mean"]],
                        yerr=[r[key + "_std"]],
                        color=color, marker="*", markersize=11, capsize=3,
                        linestyle="none",
                    )
                    # A faint line to the limit: the same method, width -> inf.
                    if sized:
                        ax.plot(
                            [sized[-1]["width"] * nudge, infinity_x * nudge],
                            [sized[-1][key + "_mean"], r[key + "_mean"]],
                            color=color, linestyle=":", alpha=0.6,
                        )
            ax.set_xscale("log")
            ax.set_xticks(finite + [infinity_x])
            ax.set_xticklabels([str(w) for w in finite] + ["inf"])
            ax.minorticks_off()
            ax.axvline(break_x, color="0.6", linestyle="--", linewidth=0.8)
            ax.text(break_x, 0.0, "//", transform=ax.get_xaxis_transform(),
                    ha="center", va="center", fontsize=12, color="0.3",
                    backgroundcolor="white")
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(f"{task} ({spec['kind']})")
            if row == 1:
                ax.set_xlabel("hidden width")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles.append(Line2D([], [], color="0.3", marker="*", markersize=10,
                          linestyle="none"))
    labels.append("infinite width (exact kernel)")
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9,
               frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine():
    """The CPU model and core count, for the record in WIDTH.md."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one seed, 600 rows, 40 epochs (about a minute)")
    parser.add_argument("--smoke", action="store_true",
                        help="seconds: widths 16 and inf, 3 epochs, 120 rows (tests)")
    parser.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                        help="folder for WIDTH.md and width_experiment.png")
    args = parser.parse_args(argv)
    if args.smoke:
        settings = {"seeds": (0,), "epochs": 3, "max_rows": 120, "widths": (16, None)}
        command = "python benchmarks/width_experiment.py --smoke"
    elif args.quick:
        settings = {"seeds": (0,), "epochs": 40, "max_rows": 600}
        command = "python benchmarks/width_experiment.py --quick"
    else:
        settings = {"seeds": (0, 1, 2, 3, 4), "epochs": 100, "max_rows": None}
        command = "python benchmarks/width_experiment.py"
    start = time.perf_counter()
    records = run(**settings)
    seconds = time.perf_counter() - start
    table = markdown_table(records)
    print()
    print(table)
    print(f"({seconds:.0f} s in all)")
    os.makedirs(args.out, exist_ok=True)
    plot(records, os.path.join(args.out, "width_experiment.png"))
    write_report(
        os.path.join(args.out, "WIDTH.md"), table, command, settings, seconds,
        keep_reading=not (args.quick or args.smoke),
    )
    return 0


def write_report(path, table, command, settings, seconds, keep_reading=True):
    """WIDTH.md: the table with how it was made.

    The written reading of the full run sits between ``<!-- reading -->``
    markers and survives a rerun of the full run (``keep_reading``); a quick
    or smoke run drops it, since it would not describe their numbers.
    """
    reading = ""
    if keep_reading and os.path.exists(path):
        with open(path) as handle:
            text = handle.read()
        begin, end = "<!-- reading -->", "<!-- /reading -->"
        if begin in text and end in text:
            reading = text[text.index(begin): text.index(end) + len(end)]
    rows = "all" if settings["max_rows"] is None else f"at most {settings['max_rows']}"
    header = (
        "# Width experiment\n\n"
        f"`{command}`: {len(settings['seeds'])} seed(s), {settings['epochs']} "
        f"full-batch epochs for every method, {rows} rows of each task (Friedman "
        "#1: 1200 rows, noise 1; digits: 1797 rows), half of them for testing, a "
        "quarter of the rest for choosing the learning rate; one thread; "
        f"{seconds:.0f} s on {machine()}, shared with other work.\n\n"
        "Each cell: test loss (std over seeds) / test score (std). "
        "Regression loss: mean squared error over the variance of the training "
        "targets (the MSE on targets standardised with the training rows' "
        "statistics). Classification loss: mean log-loss.\n\n"
        "![held-out loss against width](width_experiment.png)\n\n"
    )
    with open(path, "w") as handle:
        handle.write(header + table + "\n")
        if reading:
            handle.write("\n" + reading + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
