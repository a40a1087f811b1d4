// CRC-32 as the GPT header and entry array use it (UEFI 2.10 §5.3.2 "GPT Header": the ISO 3309 / IEEE 802.3
// polynomial 0x04C11DB7, reflected as 0xEDB88320, initial value and final XOR 0xFFFFFFFF). Written here (a
// 256-entry table, a dozen lines) rather than taken from System.IO.Hashing so the module ships no extra
// assembly that could clash with one PowerShell or another module has already loaded.
namespace VDisk.Engine.Partitions;

/// <summary>The IEEE CRC-32 of the UEFI specification.</summary>
internal static class Crc32
{
    private static readonly uint[] Table = BuildTable();

    /// <summary>The CRC-32 of <paramref name="data"/>.</summary>
    public static uint Compute(ReadOnlySpan<byte> data) => Append(0, data);

    /// <summary>Continues <paramref name="crc"/> (a finished CRC of the bytes before) over <paramref name="data"/>.</summary>
    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        uint c = ~crc;
        foreach (byte b in data) c = Table[(c ^ b) & 0xff] ^ (c >> 8);
        return ~c;
    }

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }
}
