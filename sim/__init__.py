"""Simulation of the generated Verilog (cocotb on Verilator or Icarus) against the golden model."""
