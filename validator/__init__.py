"""`aifactory-validate`: validate AIFactory chart values before `helm install`."""
