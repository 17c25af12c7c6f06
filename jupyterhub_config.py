# jupyterhub_config.py -- a production-shaped example for mig-spawner.
#
# The hub runs inside Kubernetes (in-cluster config), next to NVIDIA's GPU Operator
# (device plugin + GPU Feature Discovery). Users pick a *tier*; mig-spawner maps it to a
# concrete MIG slice for the GPUs the cluster actually has, falls back to a larger
# compatible slice when that type is full, and enforces per-team quotas.
#
# Teams are JupyterHub groups. Put users into groups with your authenticator (e.g.
# `c.GenericOAuthenticator.manage_groups = True` and `auth_state_groups_key`), or with
# `c.JupyterHub.load_groups` as below.
#
# Try a configuration before deploying it:
#   mig-spawner explain --cluster snapshot.json --config jupyterhub_config.py \
#       --user alice --tier notebook
# where snapshot.json is the output of `kubectl get nodes,pods -A -o json`.

c = get_config()  # noqa: F821  (injected by JupyterHub)

# --- the hub ---------------------------------------------------------------------------
c.JupyterHub.spawner_class = "mig"  # entry point for mig_spawner.MIGSpawner
c.JupyterHub.hub_ip = "0.0.0.0"
# Pods reach the hub through its Service (the Z2JH chart creates one named "hub").
c.JupyterHub.hub_connect_ip = "hub"

# Teams. Replace with your identity provider's groups in production.
c.JupyterHub.load_groups = {
    "vision": {"users": ["alice", "bob"]},
    "nlp": {"users": ["carol", "dave", "alice"]},
}

# --- KubeSpawner settings keep working ------------------------------------------------
c.KubeSpawner.namespace = "jupyterhub"
c.KubeSpawner.image = "quay.io/jupyter/pytorch-notebook:cuda12-2024-12-09"
c.KubeSpawner.cpu_guarantee = 1
c.KubeSpawner.mem_guarantee = "4G"
c.KubeSpawner.start_timeout = 600  # first pulls of a CUDA image are slow

# --- tiers: what users choose from -----------------------------------------------------
# Each tier names a minimum (compute slices "g" and memory in GB), how far it may fall
# back, and who may see it. The slice it resolves to depends on the GPUs present:
# "1g, >= 10 GB" is 1g.10gb on an H100, 1g.18gb on an H200, 1g.10gb (2 memory slices)
# on an A100-40GB. "order" is the tier's place in the form (lowest first); without it the
# form follows this dict, but Helm values need it (Helm sorts map keys).
c.MIGSpawner.tiers = {
    "notebook": {
        "display_name": "1g notebook",
        "order": 1,
        "description": "A 1g slice for interactive work, plotting and small models.",
        "compute_slices": 1,
        "min_memory_gb": 10,
        "max_compute_slices": 3,  # fallback may go as far as a 3g slice
        "fallback": True,
        "max_fallback_steps": 2,
        "default": True,
    },
    "training": {
        "display_name": "3g training",
        "order": 2,
        "description": "Three compute slices and >= 40 GB for fine-tuning and training runs.",
        "compute_slices": 3,
        "min_memory_gb": 40,
        "max_compute_slices": 7,
        "fallback": True,
        "max_fallback_steps": 1,
    },
    "full": {
        "display_name": "7g full GPU",
        "order": 3,
        "description": "A whole GPU (7g MIG slice or a non-MIG GPU) for large jobs.",
        "compute_slices": 7,
        "min_memory_gb": 40,
        "fallback": False,
        "groups": ["vision", "nlp"],  # only members of a team may take a whole GPU
    },
}

# --- quotas: per team, counted across all of the team's running servers -----------------
# "order" ranks a user's teams: alice (vision and nlp) is charged to vision by default and
# picks nlp in the form.
c.MIGSpawner.team_quotas = {
    "vision": {"order": 1, "compute_slices": 8, "servers": 6, "per_user_compute_slices": 4},
    "nlp": {"order": 2, "compute_slices": 14, "memory_gb": 160, "per_user_compute_slices": 7},
}
# Users in none of the teams above get this, each on their own.
c.MIGSpawner.default_quota = {"compute_slices": 1, "servers": 1}
# "granted": a fallback is charged at the size actually given (fair to the cluster);
# "requested": at the size asked for (fair to the user who was bumped up).
c.MIGSpawner.charge = "granted"

# --- reclaim (opt-in): idle GPU servers make room for spawns waiting in line -------------
# With the waiting line on ("max_wait"), "reclaim" lets the hub stop a server of the tier
# idle for "idle_after" seconds (the hub's activity, and DCGM's GPU activity where
# prometheus_url is set), after a warning on its user's home page and "grace" seconds,
# only for a spawn waiting for its slice. Turn on reclaim_dry_run first: the hub's log
# then says what it would stop. See docs/concepts.md.
# c.MIGSpawner.tiers["notebook"].update(
#     max_wait=1800, reclaim={"idle_after": 3600, "grace": 600, "max_session": 43200}
# )
# c.MIGSpawner.prometheus_url = "http://prometheus-operated.monitoring:9090"
# c.MIGSpawner.reclaim_dry_run = True
# c.MIGSpawner.reclaim_exempt_users = {"alice"}

# --- mig-spawner's service (keep it last: it reads the settings above) -----------------
# A hub-managed service: the admins' GPU slice page at /services/mig/, the open spawn
# forms' live figures, and the check that stops the hub on a malformed policy. Its roles
# let every user reach it and let it read the hub's metrics. (Z2JH: helm-values/values.yaml.)
from mig_spawner.hub.service import roles, service  # noqa: E402

c.JupyterHub.services = [service(c)]
c.JupyterHub.load_roles = roles()

# --- the home page ---------------------------------------------------------------------
# The hub's home page with a notice for a server on a fallback slice once a slice of its
# tier's own size is free, and a button that restarts it there (the user's own click).
from mig_spawner.hub.homepage import install_home_page  # noqa: E402

install_home_page(c)
