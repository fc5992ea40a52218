//! A real local Tahoe-LAFS grid.
