# A hub config for the CLI tests: three tiers, two teams with quotas, a group without one.
c = get_config()  # noqa: F821  (injected by JupyterHub, and by `mig-spawner explain`)

c.JupyterHub.spawner_class = "mig"
c.JupyterHub.load_groups = {
    # JupyterHub >= 5 form, with properties
    "vision": {"users": ["alice", "bob"], "properties": {"cost-center": "cv-42"}},
    # the plain list form
    "nlp": ["carol", "dave", "alice"],
    # a group with no GPU quota: its members get the default quota
    "interns": ["erin"],
}
c.KubeSpawner.namespace = "jupyterhub"

c.MIGSpawner.tiers = {
    "notebook": {
        "display_name": "1g notebook",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_compute_slices": 3,
        "fallback": True,
        "max_fallback_steps": 2,
        "default": True,
    },
    "training": {
        "display_name": "3g training",
        "compute_slices": 3,
        "min_memory_gb": 40,
        "max_compute_slices": 7,
        "fallback": True,
        "max_fallback_steps": 1,
    },
    "full": {
        "display_name": "7g full GPU",
        "compute_slices": 7,
        "min_memory_gb": 40,
        "fallback": False,
        "groups": ["vision", "nlp"],
    },
}
c.MIGSpawner.team_quotas = {
    "vision": {"compute_slices": 8, "servers": 6, "per_user_compute_slices": 4},
    "nlp": {"compute_slices": 14, "memory_gb": 160, "per_user_compute_slices": 7},
}
c.MIGSpawner.default_quota = {"compute_slices": 1, "servers": 1}
c.MIGSpawner.charge = "granted"
