"""Example projects shipped with mlops_nb; `mlops-nb init` copies one."""
