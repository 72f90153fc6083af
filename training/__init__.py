"""Offline side of CCRL: data at scale, synthetic corpus, candidate models, CCRL, export, reports."""
