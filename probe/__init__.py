"""Linear probes on cached features.

- `options`: what `probe fit` and a recipe's `[[probe]]` tables set (`ProbeOptions`, head names);
- `heads`, `linear`, `base`: logreg, linear and kNN heads as scikit-learn-style estimators, each
  with a sweep of its grid;
- `fit`: `fit_probe`, one head on arrays: grid on train, choice on val, test once;
- `run`: `run_probe`, every matching entry x head x seed, one record each; `entries` picks the
  entries, `settings` names each run;
- `volumes`: a 3D entry's slice rows become one row per volume, by a fixed aggregation or by the
  gated attention `attention` learns on train;
- `baselines`: the null baselines (`--baselines`): majority class, logreg on pixels, random init;
- `cli`, `summary`: the `probe` commands (`suite.programs` adds `probe suite`).
"""
