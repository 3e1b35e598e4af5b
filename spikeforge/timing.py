"""Pipeline depths and fixed cycle overheads: the one definition of every number the gateware
(:mod:`spikeforge.hw`) and the cycle models (:mod:`spikeforge.sw.cycles`,
:mod:`spikeforge.sw.ttfs_cycles`) must agree on.

The gateware builds its pipelines and drain states from these numbers; the cycle models
count with them; the RTL tests check that the two agree sample by sample. Change one here
and both sides follow (the tests then tell whether the state machines still match it).
``docs/architecture.md``, ``docs/learning.md`` and ``docs/ttfs.md`` derive each from the
state machines. Imports nothing: both sides may import it.
"""

CYCLE_COUNTER_BITS = 32   # a sample's cycle counter (Network.cycles, RUN's response)

# ---- the weight port of a LIF layer (hw.lif_layer) ----
WEIGHT_READ_LATENCY = 3   # cycles from ``w_addr`` to its word on ``w_rdata``: address
                          # register, block RAM read, the layer's word register

# ---- rate-coded inference (hw.network, sw.cycles) ----
ENCODER_OVERHEAD = 3      # pipeline fill (read, evaluate) + end-of-step marker
INTEGRATE_DRAIN = WEIGHT_READ_LATENCY   # a layer's last integration: weight word, membrane
                                        # read, write-back (EOS_DRAIN .. EOS_DRAIN3)
LAYER_OVERHEAD = 2 + INTEGRATE_DRAIN    # accept the end marker, drain, emit the marker
END_OF_STEP_PASSES = 3    # per group at the end of a step: read, threshold/leak/write, test
PHASE_OVERHEAD = 1        # barrier: all stages done -> next phase opens
START_OVERHEAD = 0        # the cycle count starts in the first cycle of phase 0
FINISH_OVERHEAD = 0       # done rises right after the last phase (prediction latched there)

# ---- the decoder on the chip (hw.exit_decoder, sw.exit_decoder) ----
DECIDE_OVERHEAD = 3       # per decision check, on top of one cycle per class: the scan
                          # selects a score a cycle, compares it a cycle later, then the
                          # lead is compared and registered

# ---- early_exit = "settled" (hw.network, sw.cycles.settle_checks) ----
SETTLE_OVERHEAD = 1       # per check, on top of one cycle per class: the scan reads a count
                          # a cycle, then the lead is compared and the sample ends or goes on

# ---- desire backpropagation (hw.desire_unit, sw.cycles.learn_cycles) ----
LEARN_OVERHEAD = 2        # DONE state + the cycle the network sees ``done``
OUT_DESIRE_OVERHEAD = 2   # the last output group is counted, then evaluated, after its read
BACKWARD_OVERHEAD = WEIGHT_READ_LATENCY + 4   # drain: the weight word, then products,
                                              # sums of four, their sum, S_j (and write)
UPDATE_OVERHEAD = 0       # the presynaptic scan starts straight from the previous phase
PRE_CHECK = 3             # per presynaptic neuron: read its raster, register its lane, test it
PAIR_OVERHEAD = 3         # per (pre, active group): issue, load, T-1 accumulate, round, write

# ---- the TTFS core (hw.ttfs_network, hw.ttfs_lane, sw.ttfs_cycles) ----
TTFS_ENCODE_OVERHEAD = 2      # pipeline (read, evaluate) + the cycle the controller sees idle
TTFS_NEURON_OVERHEAD = 5      # LEN, end of list, DRAIN, end of scan, FINISH
TTFS_INTEGRATE_OVERHEAD = 1   # the cycle the controller sees every lane idle
TTFS_UPDATE_OVERHEAD = 6      # controller start, LEN, end of list, DRAIN, WRITE_LEN, lane idle
TTFS_LEARN_OVERHEAD = 1       # the final UPDATE cycle that finds no winner left
