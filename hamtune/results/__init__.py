"""What a finished (or running) sweep found: leaderboards, importance, plots and the HTML report.

`analysis` computes DataFrames from the result tables of one or several sweeps; `importance`
ranks hyperparameters with Optuna's evaluators on the `offline_study` rebuilt from a table (or
the study the sweep kept); `plots` and `studyplots` draw hamtune's and Optuna's figures; `report`
prints the analysis and writes the HTML report. Reads `hamtune.store`, never trains.
"""
