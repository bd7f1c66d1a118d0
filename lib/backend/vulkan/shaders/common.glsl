// Included first by every shader (README-dev.md): workgroup size and
// subgroup size come from specialization constants 0 and 1.
#extension GL_EXT_shader_16bit_storage : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint SUBGROUP = 32;
