// The slot-th smallest of the n_used expert ids of row t (ids are distinct:
// moe_route never repeats one), so a row's experts are taken in increasing
// id whatever order the router listed them in. Needs p.i_off, p.i_stride,
// p.n_used, p.slot and ids[].
int slot_index(uint t)
{
    uint base = p.i_off + t * p.i_stride;
    for (uint k = 0u; k < p.n_used; k++) {
        uint below = 0u;
        for (uint j = 0u; j < p.n_used; j++)
            below += ids[base + j] < ids[base + k] ? 1u : 0u;
        if (below == p.slot)
            return int(k);
    }
    return 0;
}

int slot_expert(uint t)
{
    return ids[p.i_off + t * p.i_stride + uint(slot_index(t))];
}
