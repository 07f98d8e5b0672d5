"""Framework-neutral core: settings, ids, safe JSON, masking, prompts and the recorder."""
