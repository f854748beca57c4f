//! The subscriber offers Roost writes itself (ADR 0020, step 4).
