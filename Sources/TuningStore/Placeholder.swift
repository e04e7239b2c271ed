// TuningStore: under construction (issue 4).
