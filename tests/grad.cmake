# Exact host gradients: finite differences, checkpointing, refusals, the CLI.
moelat_test(test_grad SOURCES test_grad.c test_support.c LABELS grad TIMEOUT 1200)
add_dependencies(test_grad moelat_test_plugin_good)
