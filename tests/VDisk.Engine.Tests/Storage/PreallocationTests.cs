// Issue 7, item 4: preallocation=falloc on a full file system fails (ENOSPC) instead of reporting success with
// nothing reserved; on a file system without fallocate (ramfs) the space is reserved by writing, as qemu-img does
// through posix_fallocate, with a warning. Real small file systems: a 4 MiB tmpfs filled up to its last MiB; a ramfs.
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Storage;

public class PreallocationTests
{
    [SkippableTheory]
    [InlineData(ImageFormat.Raw)]
    [InlineData(ImageFormat.Qcow2)]
    public void FallocOnAFullFileSystemFailsAndLeavesNothing(ImageFormat format)
    {
        HostSetup.RequireRoot();
        using var dir = new TempFolder();
        using var small = new ScratchMount(dir.File("small"), "tmpfs", "size=4m");
        small.Fill(leaveBytes: 1 << 20); // room for the image's metadata, not for its 16 MiB

        var e = Assert.Throws<VDiskException>(() => CreateImage.Run(small.File("disk.img"), new CreateOptions
        {
            Format = format, Size = 16 << 20, Preallocation = Preallocation.Falloc,
        }));

        Assert.Equal(VDiskErrorKind.IoError, e.Kind);
        Assert.Equal(small.File("disk.img"), e.Path);
        Assert.Contains("No space left on device", e.Message);
        Assert.Equal(new[] { small.File("filler") }, Directory.GetFiles(small.Path));
    }

    [SkippableTheory]
    [InlineData(ImageFormat.Raw, 16 << 20)]
    [InlineData(ImageFormat.Qcow2, 16 << 20)]
    public void FallocWithoutFallocateWritesTheSpaceAndWarns(ImageFormat format, long size)
    {
        HostSetup.RequireRoot();
        using var dir = new TempFolder();
        using var ramfs = new ScratchMount(dir.File("ramfs"), "ramfs");
        string path = ramfs.File("disk.img");

        var result = CreateImage.Run(path, new CreateOptions { Format = format, Size = size, Preallocation = Preallocation.Falloc });

        var warning = Assert.Single(result.Warnings);
        Assert.Contains("does not support fallocate", warning);
        Assert.Contains(ramfs.Path, warning);
        Assert.True(InspectImage.Run(path).FileSize >= size);
        Assert.True(new AllocatedFile(path).Bytes >= size, "the space was not reserved");
        Assert.Empty(CreateImage.Run(dir.File("elsewhere.img"), new CreateOptions { Format = format, Size = size, Preallocation = Preallocation.Falloc }).Warnings);
    }

    // st_blocks of a file, through the engine's storage.
    private sealed class AllocatedFile(string path)
    {
        public long Bytes
        {
            get
            {
                using var storage = FileStorage.Open(path, write: false);
                return storage.AllocatedBytes;
            }
        }
    }
}
