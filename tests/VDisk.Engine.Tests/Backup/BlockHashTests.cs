// Block hashes and file checksums of backup sets (issue 11 "The backup set"): a block's hash is the SHA-256 of its
// 64 KiB (the last block padded with zeroes), zeroes found without hashing give the same value, and a file checksum
// changes with any byte. Block hash files reject damage.
using System.Security.Cryptography;
using VDisk.Engine.Backup;
using VDisk.Engine.Core;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Backup;

public class BlockHashTests
{
    [Fact]
    public void ABlockHashIsTheSha256OfTheBlockPaddedWithZeroes()
    {
        var block = new byte[BlockHash.BlockSize];
        Random.Shared.NextBytes(block.AsSpan(0, 1000));
        Assert.Equal(Convert.ToHexString(SHA256.HashData(block)).ToLowerInvariant(), BlockHash.Of(block).ToString());
        Assert.Equal(BlockHash.Of(block), BlockHash.Of(block.AsSpan(0, 1000))); // a short last block
        Assert.Equal(Convert.ToHexString(SHA256.HashData(new byte[BlockHash.BlockSize])).ToLowerInvariant(), BlockHash.Zero.ToString());
        Assert.Equal(BlockHash.Zero, BlockHash.Of(new byte[4096]));
        Assert.NotEqual(BlockHash.Zero, BlockHash.Of(new byte[] { 0, 0, 1 }));
    }

    [Fact]
    public void AFileChecksumChangesWithAnyByte()
    {
        using var dir = new TempFolder();
        string file = dir.File("f");
        var bytes = new byte[3 << 20];
        Random.Shared.NextBytes(bytes);
        File.WriteAllBytes(file, bytes);
        string before = FileChecksums.Of(file);
        Assert.StartsWith("xxh128:", before);
        bytes[(2 << 20) + 12345] ^= 1;
        File.WriteAllBytes(file, bytes);
        Assert.NotEqual(before, FileChecksums.Of(file));
    }

    [Fact]
    public void BlockHashFilesRoundTripAndRejectDamage()
    {
        using var dir = new TempFolder();
        string file = dir.File("p.blockhashes");
        var entries = new List<BlockHashEntry> { new(0, BlockHash.Of(new byte[] { 1 })), new(7, BlockHash.Zero), new(9, BlockHash.Of(new byte[] { 2 })) };
        BlockHashFile.Write(file, entries);
        Assert.Equal(entries, BlockHashFile.Read(file));

        var bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, bytes[..^5]); // truncated
        Assert.Equal(VDiskErrorKind.Corrupt, Assert.Throws<VDiskException>(() => BlockHashFile.Read(file)).Kind);
        bytes[24 + 40 + 7] = 0; // the second entry's block index drops to 0: out of order
        File.WriteAllBytes(file, bytes);
        Assert.Equal(VDiskErrorKind.Corrupt, Assert.Throws<VDiskException>(() => BlockHashFile.Read(file)).Kind);
        Assert.Throws<ArgumentException>(() => BlockHashFile.Write(dir.File("bad"), new[] { entries[1], entries[0] }));
    }
}
