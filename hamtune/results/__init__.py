"""What a finished (or running) sweep found: leaderboards, importance, plots and the HTML report.

`analysis` computes DataFrames from the result tables of one or several sweeps; `importance`
ranks hyperparameters with Optuna's evaluators on the `offline_study` rebuilt from a table (or
the study the sweep kept); `fidelity` tells whether ASHA's rungs rank trials as their ends do,
both from a trial's best score so far (`curves`); `plots` and `studyplots` draw hamtune's and
Optuna's figures; `report` prints the analysis and writes the HTML report. Reads
`hamtune.store`, never trains.
"""
