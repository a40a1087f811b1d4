// Cache modes with QEMU's meanings (DESIGN.md "Storage", table of modes).
namespace VDisk.Engine.Storage;

/// <summary>How writes travel through the host page cache, with the meanings QEMU gives these names.</summary>
public enum CacheMode
{
    /// <summary>Host page cache used; writes complete when cached; flush makes them durable. The default.</summary>
    Writeback,
    /// <summary>Host page cache bypassed (O_DIRECT / no buffering); flush makes writes durable.</summary>
    None,
    /// <summary>Host page cache used; each write is durable before it completes.</summary>
    Writethrough,
    /// <summary>Host page cache bypassed and each write durable before it completes.</summary>
    DirectSync,
    /// <summary>Like writeback but flushes are ignored: fast and unsafe on a host crash.</summary>
    Unsafe,
}

/// <summary>The properties that follow from a <see cref="CacheMode"/>.</summary>
public static class CacheModeExtensions
{
    /// <summary>True when the host page cache is bypassed.</summary>
    public static bool BypassesHostCache(this CacheMode mode) => mode is CacheMode.None or CacheMode.DirectSync;

    /// <summary>True when each write is durable before it completes.</summary>
    public static bool WritesAreDurable(this CacheMode mode) => mode is CacheMode.Writethrough or CacheMode.DirectSync;

    /// <summary>True when <see cref="IStorage.Flush"/> does real work.</summary>
    public static bool HonoursFlush(this CacheMode mode) => mode != CacheMode.Unsafe;
}
