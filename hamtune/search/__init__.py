"""What the search tries next and when it stops a trial: Optuna and ASHA, configured from a sweep.

`space` turns the sweep's space into Optuna distributions (one conditional unfreeze depth per
model) and its starting points; `searcher` is Ray's OptunaSearch taught to record pruned and
failed trials as such; `scheduler` builds ASHA; `storage` keeps the study where it outlives the
driver (a journal file or a database); `warmstart` seeds a new study from earlier sweeps' tables.
Above training (a trial never asks the search anything) and below the sweep that runs it.
"""
