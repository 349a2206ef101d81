"""The four MedMNIST task types, in one light module (no medmnist, no torch) every layer can import."""

MULTI_LABEL = "multi-label, binary-class"
TASKS = ("multi-class", "binary-class", MULTI_LABEL, "ordinal-regression")
