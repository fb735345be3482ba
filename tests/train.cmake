# Training: the optimizers against PyTorch trajectories.
moelat_test(test_optim SOURCES test_optim.c test_support.c LABELS train TIMEOUT 60 LIBS m)
