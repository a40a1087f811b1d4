// qcow2 feature bits (qcow2.rst "Header": incompatible, compatible and autoclear features) and the
// feature name table QEMU writes so older tools can name bits they do not know.
namespace VDisk.Engine.Formats.Qcow2;

/// <summary>Feature bit masks and their names.</summary>
public static class Qcow2Features
{
    // Incompatible features.
    public const ulong Dirty = 1UL << 0;
    public const ulong Corrupt = 1UL << 1;
    public const ulong ExternalDataFile = 1UL << 2;
    public const ulong CompressionType = 1UL << 3;
    public const ulong ExtendedL2 = 1UL << 4;
    /// <summary>Incompatible bits this engine understands.</summary>
    public const ulong KnownIncompatible = Dirty | Corrupt | ExternalDataFile | CompressionType | ExtendedL2;

    // Compatible features.
    public const ulong LazyRefcounts = 1UL << 0;

    // Autoclear features.
    public const ulong Bitmaps = 1UL << 0;
    public const ulong RawExternalData = 1UL << 1;

    /// <summary>The feature name table qemu-img writes: (type, bit, name), type 0 incompatible, 1 compatible, 2 autoclear.</summary>
    public static readonly (byte Type, byte Bit, string Name)[] NameTable =
    {
        (0, 0, "dirty bit"),
        (0, 1, "corrupt bit"),
        (0, 2, "external data file"),
        (0, 3, "compression type"),
        (0, 4, "extended L2 entries"),
        (1, 0, "lazy refcounts"),
        (2, 0, "bitmaps"),
        (2, 1, "raw external data"),
    };

    /// <summary>Names the set bits of <paramref name="mask"/>, using the image's own feature table when it has one.</summary>
    public static IEnumerable<string> Describe(ulong mask, byte type, IReadOnlyDictionary<(byte, byte), string> imageNames)
    {
        for (byte bit = 0; bit < 64; bit++)
        {
            if ((mask & (1UL << bit)) == 0) continue;
            yield return imageNames.TryGetValue((type, bit), out var name) ? name : $"unknown feature bit {bit}";
        }
    }
}
