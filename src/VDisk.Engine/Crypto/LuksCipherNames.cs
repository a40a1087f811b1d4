// Cipher names as one string, the way cryptsetup, Get-VDisk and the backup manifest write them
// (cipher-keybits-mode-ivgen, ESSIV as essiv:hash): aes-256-xts-plain64, aes-128-cbc-essiv:sha256.
using VDisk.Engine.Core;

namespace VDisk.Engine.Crypto;

/// <summary>Parses the one-string form of a <see cref="LuksCipherSpec"/> (its ToString).</summary>
public static class LuksCipherNames
{
    /// <summary>qemu-img's default cipher.</summary>
    public const string Default = "aes-256-xts-plain64";

    /// <summary>
    /// The spec <paramref name="name"/> (e.g. aes-128-cbc-essiv:sha256) names, with <paramref name="hash"/> for key
    /// derivation; a name that does not parse, or that qemu-img would refuse, is InvalidArgument.
    /// </summary>
    public static LuksCipherSpec Parse(string name, string hash)
    {
        var parts = name.ToLowerInvariant().Split('-');
        if (parts.Length != 4)
            throw VDiskException.Invalid(null, $"Cipher '{name}' is not of the form cipher-keybits-mode-ivgen, e.g. {Default} or aes-128-cbc-essiv:sha256.");
        var ivgen = parts[3].Split(':', 2);
        return LuksCipherSpec.FromQemuOptions($"{parts[0]}-{parts[1]}", parts[2], ivgen[0], ivgen.Length > 1 ? ivgen[1] : null, hash.ToLowerInvariant());
    }
}
