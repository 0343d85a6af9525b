"""Domain models shared by the server, the scheduler, the cluster adapter and workloads."""
