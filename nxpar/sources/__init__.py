"""Where rows come from, read where they lie: Redis streams in blissdata's layout (`redis_reader`, the
`resp_reader` socket parser, `blissdata_raw`: every use of blissdata internals), Lima files, Lima2 master
and receivers' files, Mosca files and the Mosca server, the bounded Lima2 conductor handshake. Used by
the writer ranks (rows) and by rank 0 (lengths, what is complete on disk). Imports protocol/ and util/."""
