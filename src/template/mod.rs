//! The minijinja environment with the Ansible filters kubeasz templates use.
