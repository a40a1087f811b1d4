// Reads a disk's partition table the way Linux and util-linux do (block/partitions/efi.c, msdos.c; libfdisk):
// a GPT first (primary header at LBA 1 for 512- and 4096-byte blocks, UEFI 2.10 §5.3.2; when it is damaged, the
// backup at the last LBA, §5.3.2 "the backup GPT header ... must be checked"), then a DOS MBR (§5.2.1) with its
// logical partitions in the EBR chain, then a whole-disk file system (reported as partition 0, as guestfish does).
// Hostile tables: every read is inside the disk and bounded (entry array ≤ 4 MiB, ≤ 256 EBRs, loops detected);
// a table that cannot be read is a Corrupt VDiskException naming the image and the problem.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;

namespace VDisk.Engine.Partitions;

/// <summary>Reads <paramref name="destination"/>.Length bytes of the disk at <paramref name="offset"/> (always inside the disk).</summary>
public delegate void DiskRead(long offset, Span<byte> destination);

/// <summary>Finds the partitions of a disk.</summary>
public static class PartitionReader
{
    /// <summary>Most EBRs followed in one extended partition (Linux's DISK_MAX_PARTS is 256).</summary>
    public const int MaxEbrs = 256;
    private static readonly int[] GptSectorSizes = { 512, 4096 };

    /// <summary>
    /// Opens the image at <paramref name="path"/> (through its backing chain, read-only and without taking or checking
    /// QEMU's locks, so a running VM's disk can be read) and reads its partitions.
    /// </summary>
    public static PartitionTable ReadImage(string path, ImageFormat? format = null)
    {
        using var disk = ImageChain.Open(path, new OpenOptions { Format = format, ForceShare = true });
        return Read(disk);
    }

    /// <summary>Reads the partitions of an open disk.</summary>
    public static PartitionTable Read(VirtualDisk disk) => Read(disk.Path, disk.Length, disk.Read);

    /// <summary>Reads the partitions of a disk of <paramref name="length"/> bytes; <paramref name="path"/> names it in messages.</summary>
    public static PartitionTable Read(string path, long length, DiskRead read)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        var disk = new Disk(path, length, read);
        MbrRecord? mbr = null;
        var sector0 = new byte[MbrRecord.Size];
        if (length >= MbrRecord.Size)
        {
            read(0, sector0);
            mbr = MbrRecord.TryParse(sector0, out _);
        }
        foreach (int ss in GptSectorSizes)
        {
            if (length < 2L * ss) continue;
            var probe = new byte[8];
            read(ss, probe);
            if (GptHeader.HasSignature(probe)) return GptTable.Read(disk, ss);
        }
        if (mbr?.IsProtective == true) return GptTable.ReadBackupOnly(disk);
        if (mbr != null && !IsBootSectorFileSystem(disk)) return MbrTable.Read(disk, mbr, sector0);
        return WholeDisk(disk);
    }

    // A FAT, exFAT or NTFS boot sector ends in 0x55AA like an MBR; libblkid's dos prober gives way to such a file system.
    private static bool IsBootSectorFileSystem(Disk disk) => disk.Probe(0, disk.Length).Name is "fat12" or "fat16" or "fat32" or "ntfs" or "exfat";

    private static PartitionTable WholeDisk(Disk disk)
    {
        var fs = disk.Length > 0 ? disk.Probe(0, disk.Length) : FileSystemInfo.Unknown;
        var parts = fs == FileSystemInfo.Unknown ? Array.Empty<DiskPartition>()
            : new[] { new DiskPartition { Number = 0, Start = 0, Size = disk.Length, TableType = PartitionTableType.None, FileSystem = fs } };
        return new PartitionTable(disk.Path, PartitionTableType.None, MbrRecord.Size, string.Empty, null, parts, Array.Empty<string>());
    }

    /// <summary>The disk being read, with bounded, in-range reads.</summary>
    internal sealed class Disk
    {
        private byte[]? _probeBuffer;

        public Disk(string path, long length, DiskRead read)
        {
            Path = path;
            Length = length;
            ReadAt = read;
        }

        public string Path { get; }
        public long Length { get; }
        private DiskRead ReadAt { get; }

        /// <summary>Reads <paramref name="destination"/> at <paramref name="offset"/>; false (nothing read) when it is not all inside the disk.</summary>
        public bool TryRead(long offset, Span<byte> destination)
        {
            if (offset < 0 || offset > Length || destination.Length > Length - offset) return false;
            ReadAt(offset, destination);
            return true;
        }

        /// <summary>The file system at <paramref name="start"/> of a partition of <paramref name="size"/> bytes (clamped to the disk).</summary>
        public FileSystemInfo Probe(long start, long size)
        {
            if (start < 0 || start >= Length || size <= 0) return FileSystemInfo.Unknown;
            int n = (int)Math.Min(FileSystemProbe.ProbeBytes, Math.Min(size, Length - start));
            _probeBuffer ??= new byte[FileSystemProbe.ProbeBytes];
            var head = _probeBuffer.AsSpan(0, n);
            ReadAt(start, head);
            return FileSystemProbe.Probe(head);
        }

        /// <summary>A Corrupt error naming the image.</summary>
        public VDiskException Corrupt(string message) => VDiskException.Corrupt(Path, message);
    }
}
