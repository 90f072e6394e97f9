"""Runs the whole stack locally (``make run``); ``launcher.services`` describes it for compose as well."""
