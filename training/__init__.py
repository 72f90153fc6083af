"""Offline side of CCRL: data, synthetic corpus, candidate models, CCRL, export, reports."""
