"""The municipality model: load it from an Ansible inventory, validate it, plan its addresses."""
