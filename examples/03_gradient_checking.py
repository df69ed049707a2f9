"""Gradient checking (course week 1): find a planted bug in back-propagation.

The course's check compares the analytic gradient with the two-sided difference
``(J(theta + eps) - J(theta - eps)) / (2 eps)`` through
``difference = ||grad - approx|| / (||grad|| + ||approx||)``: about 1e-7 is fine, 1e-3 is a bug.
``fd.gradcheck`` does it in float64 and reports the difference of every parameter tensor, which
points at the layer whose backward pass is wrong.

Here the second layer's backward pass has a planted bug (its dW doubled, like the course's
exercise); gradient checking flags it and names W1 (fastdl counts layers from 0: the second
layer's weights), while the correct network passes.

    python examples/03_gradient_checking.py
"""

import fastdl as fd
from _common import figure, save, table


class BuggyDense(fd.Dense):
    """A Dense layer with a planted back-propagation bug: dW comes out doubled."""

    def backward(self, dA, ws, need_dX):
        dX = super().backward(dA, ws, need_dX)
        self.dW *= 2.0                      # the bug
        return dX


def net(second_layer):
    return fd.Sequential([fd.Dense(5, activation="tanh"), second_layer(3, activation="tanh"),
                          fd.Dense(1, activation="sigmoid")],
                         input_dim=2, dtype="float64", seed=0)


X, y = fd.data.make_moons(64, noise=0.2, seed=0)
results = {"correct network": fd.gradcheck(net(fd.Dense), X[:16], y[:16]),
           "planted bug in layer 2": fd.gradcheck(net(BuggyDense), X[:16], y[:16])}

rows = []
for name, r in results.items():
    worst_name, worst = r.worst()
    rows.append({"network": name, "difference": f"{r.difference:.2e}",
                 "verdict": "passed" if r.passed else "FAILED",
                 "worst tensor": f"{worst_name} ({worst:.1e})"})
table(rows, ["network", "difference", "verdict", "worst tensor"],
      title=f"gradient checking (float64, eps=1e-7, threshold {fd.gradcheck.__defaults__[-1]:.0e})")
print("\nper tensor, buggy network:")
table([{"tensor": n, "difference": f"{d:.2e}", "max |error|": f"{e:.2e}"}
       for n, d, e in results["planted bug in layer 2"].per_tensor],
      ["tensor", "difference", "max |error|"])

fig = figure(ncols=1, size=(6.0, 3.4))
if fig is not None:
    ax = fig[1][0]
    for k, (name, r) in enumerate(results.items()):
        names = [n for n, _, _ in r.per_tensor]
        diffs = [max(d, 1e-16) for _, d, _ in r.per_tensor]
        xs = [i + 0.4 * k for i in range(len(names))]
        ax.bar(xs, diffs, width=0.4, label=name)
    ax.set_xticks([i + 0.2 for i in range(len(names))], names)
    ax.set_yscale("log")
    ax.axhline(r.threshold, color="k", lw=0.8, ls="--")
    ax.set_ylabel("relative difference")
    ax.set_title("gradient check per tensor (dashed: the threshold)", fontsize=9)
    ax.legend(fontsize=7)
save(fig, "03_gradient_checking.png")
