# A copy of the seed article's U-Net (its `self.dim` bug fixed): the oracle for the `seed` preset.
# Kept in the tests so nothing reads ../shared at run time.
import math, torch, torch.nn as nn, torch.nn.functional as F
class TimestepEmbedding(nn.Module):
    def __init__(self, dim):
        super().__init__(); self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.SiLU(), nn.Linear(dim * 4, dim))
    def forward(self, t):
        half_dim = self.dim // 2
        emb = math.log(10000) / half_dim
        emb = torch.exp(torch.arange(half_dim, device=t.device) * -emb)
        emb = t[:, None] * emb[None, :]
        emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
        return self.mlp(emb)
class ResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, time_emb_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1); self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm1 = nn.GroupNorm(8, out_ch); self.norm2 = nn.GroupNorm(8, out_ch)
        self.time_mlp = nn.Linear(time_emb_dim, out_ch)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
    def forward(self, x, t_emb):
        h = self.norm1(F.silu(self.conv1(x)))
        h = h + self.time_mlp(t_emb)[:, :, None, None]
        h = self.norm2(F.silu(self.conv2(h)))
        return h + self.skip(x)
class AttentionBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.norm = nn.GroupNorm(8, channels); self.qkv = nn.Conv2d(channels, channels * 3, 1); self.proj = nn.Conv2d(channels, channels, 1)
    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x)
        qkv = self.qkv(h).reshape(B, 3, C, H*W)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        attn = torch.softmax(q.transpose(-1, -2) @ k / math.sqrt(C), dim=-1)
        h = (v @ attn.transpose(-1, -2)).reshape(B, C, H, W)
        return x + self.proj(h)
class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.time_emb = TimestepEmbedding(256)
        self.enc1 = ResBlock(3, 64, 256); self.enc2 = ResBlock(64, 128, 256); self.enc3 = ResBlock(128, 256, 256)
        self.down = nn.MaxPool2d(2)
        self.mid = ResBlock(256, 256, 256); self.mid_attn = AttentionBlock(256)
        self.up = nn.Upsample(scale_factor=2)
        self.dec3 = ResBlock(512, 128, 256); self.dec2 = ResBlock(256, 64, 256); self.dec1 = ResBlock(128, 64, 256)
        self.out = nn.Conv2d(64, 3, 1)
    def forward(self, x, t):
        t_emb = self.time_emb(t)
        e1 = self.enc1(x, t_emb); e2 = self.enc2(self.down(e1), t_emb); e3 = self.enc3(self.down(e2), t_emb)
        m = self.mid_attn(self.mid(self.down(e3), t_emb))
        d3 = self.dec3(torch.cat([self.up(m), e3], dim=1), t_emb)
        d2 = self.dec2(torch.cat([self.up(d3), e2], dim=1), t_emb)
        d1 = self.dec1(torch.cat([self.up(d2), e1], dim=1), t_emb)
        return self.out(d1)
