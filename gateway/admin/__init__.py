"""The operator's surface: health and readiness, /admin/* (targets, config, reload, route
dry run, traces, events), feedback, and the /ui dashboard."""
