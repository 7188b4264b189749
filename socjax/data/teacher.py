"""A synthetic teacher-student task: Gaussian inputs labelled by a fixed random teacher MLP.

x ~ N(0, I_dim) (float32); the teacher is dim -> hidden (tanh) -> classes with weights drawn
N(0, 1/fan_in) from its own seed, and an example's label is the argmax of the teacher's output.
Every number (dim, hidden, classes, train and test counts, seed) is in the run's config
(config.TeacherConfig), so the data are the same wherever the run is repeated. The inputs are
(dim, 1, 1) "images" to the models, float, and not divided by --pixel-scale.
"""

from __future__ import annotations

import numpy as np

from socjax.config import TeacherConfig
from socjax.data.dataset import RawImages, check_raw


def load_teacher(t: TeacherConfig) -> RawImages:
    rng = np.random.default_rng([t.seed, 0x7EAC])
    w1 = rng.normal(0.0, 1.0 / np.sqrt(t.dim), (t.dim, t.hidden))
    w2 = rng.normal(0.0, 1.0 / np.sqrt(t.hidden), (t.hidden, t.classes))
    x = rng.normal(0.0, 1.0, (t.train + t.test, t.dim)).astype(np.float32)
    labels = np.argmax(np.tanh(x.astype(np.float64) @ w1) @ w2, axis=1).astype(np.uint8)
    raw = RawImages(x[:t.train], labels[:t.train], x[t.train:], labels[t.train:], (t.dim, 1, 1), t.classes, 1)
    return check_raw(raw, f"teacher (seed {t.seed})")
