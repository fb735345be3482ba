/* The tensors of one CNF block, in their declaration order (cnf_spec).
 * Plain C and OpenCL C alike: the device backward (cnf_backward.c) reads
 * it too. */
#ifndef MOELAT_CNF_TENSORS_H
#define MOELAT_CNF_TENSORS_H

enum cnf_tensor {
    CNF_W0, CNF_B0,        /* neural_ode.ode_network.0: 2S -> H */
    CNF_W3, CNF_B3,        /* neural_ode.ode_network.3: H -> H/2 */
    CNF_W5, CNF_B5,        /* neural_ode.ode_network.5: H/2 -> S */
    CNF_TIME_W,            /* neural_ode.time_embedding.weight [H/4, 1] */
    CNF_GAMMA,             /* neural_ode.damping_strength */
    CNF_IN_G, CNF_IN_B,    /* neural_ode.input_norm over 2S */
    CNF_OUT_G, CNF_OUT_B,  /* neural_ode.output_norm over S */
    CNF_BASE_DT,           /* solver.base_dt (unused by both modes) */
    CNF_LAMBDA,            /* solver.lipschitz_factor */
    CNF_N_TENSORS
};

#endif
