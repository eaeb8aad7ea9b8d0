"""The command layer: one module per verb, each with NAME, HELP, `add_arguments(parser)` and
`run(args) -> int`. These are the only readers of the parsed command line: they turn it into
plain options and call the library. `cli.py` builds the parser from `ALL`, in this order.
"""

from . import (ask, check_checkpoint, convert_nl2bash, data_report, doctor, estimate_memory, export, full, lock_data,
               rehearse, score_execution, smoke, validate)

ALL = (validate, smoke, full, rehearse, export, lock_data, doctor, data_report, estimate_memory, check_checkpoint,
       score_execution, convert_nl2bash, ask)
