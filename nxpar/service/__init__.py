"""Entry points and Tango devices: `NexusWriterService` (`main`: the MPI job, rank 0's Tango server),
the `NexusWriter` and `BlissWriter` devices, `RegisterNexusWriter`, `NexusWriterBatch`, logging options.
The composition root: the only package that may import both driver/ (rank 0) and writers/ (writer
ranks); it also imports protocol/, sources/, nexus/, util/."""
