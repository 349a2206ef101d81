"""What both command-line programs are made of, light enough that `--help` never imports torch.

- `options`: options declared once, on the dataclass that uses them (`option(...)`), and the three
  readers that enforce their rules alike: click (`click_options`), recipes (`check_value`) and the
  dataclasses themselves (`check_fields`);
- `common`: click glue and output: logging and -v/-q, the data options every command shares, the
  one-line user errors, tables and `--json`, the registry listings;
- `checks`: a command's dataset, backbone and weights checked before torch loads.
"""
