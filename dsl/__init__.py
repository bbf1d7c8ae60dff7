"""Parsing a Wffile into the workflow model; every Wffile error with its position."""
