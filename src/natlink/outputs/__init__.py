"""Outputs of a link run for people: discovery of a person's datasets, accuracy, the HTML report and the case study."""
